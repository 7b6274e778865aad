"""Container engines (Docker, Podman), which container images would need: ``jobforge serve --container-engine``.

jobforge runs Lambda functions from .zip archives and AgentCore runtimes from code in confined processes of
its own. A container image (a Lambda function's PackageType Image, a runtime's containerConfiguration)
needs a container engine; this build runs none, so the option is checked at start and refused with what
stands in its way, and such functions and runtimes are refused at create with ``refusal``.
"""

from __future__ import annotations

import shutil
import subprocess

ENGINES = ("docker", "podman")
CHECK_SECONDS = 30


def refusal(what: str, instead: str) -> str:
    """The message that refuses a container image: what to install and configure, and what to do instead."""
    return (f"{what} need a container engine, and this jobforge server runs none: install Docker or Podman, "
            f"start its daemon, and name it with jobforge serve --container-engine docker (or podman). Without "
            f"one, {instead}.")


def problem(engine: str) -> str:
    """Why this server cannot run container images with the engine."""
    path = shutil.which(engine)
    if path is None:
        return f"{engine} is not installed on this host: install Docker or Podman and start its daemon."
    try:
        checked = subprocess.run([path, "info"], capture_output=True, text=True, timeout=CHECK_SECONDS,
                                 stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"'{engine} info' could not run ({err}): start the {engine} daemon."
    if checked.returncode != 0:
        reason = (checked.stderr.strip().splitlines() or [f"exit status {checked.returncode}"])[-1]
        return f"'{engine} info' failed ({reason}): start the {engine} daemon, or install Podman."
    return (f"{engine} works on this host, but this jobforge does not run container images: package Lambda "
            "functions as .zip archives and deploy AgentCore agents as code (codeConfiguration).")
