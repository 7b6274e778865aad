"""Container engines (Docker, Podman) that run container images: ``jobforge serve --container-engine``.

A Lambda function of PackageType Image and an AgentCore runtime with a containerConfiguration run as
containers of the engine named at start, driven through the command line Docker and Podman share. Without
one, such functions and runtimes are refused at create with ``refusal``. Every container jobforge starts
carries a label naming this server's data dir, so that a server started after a crash removes what the
previous one left (``sweep``) and nothing of another server's.

jobforge pulls no images: an image URI names an image the engine already has (built, pulled or loaded
there), and a function runs the image its URI named when it was created or its code last updated.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ENGINES = ("docker", "podman")
CHECK_SECONDS = 30
COMMAND_SECONDS = 60
OWNER_LABEL = "io.jobforge.owner"
# The name a container reaches the host by: Podman adds it to every container; Docker is told to.
HOST_ALIAS = {"podman": "host.containers.internal", "docker": "host.docker.internal"}
ARCHITECTURES = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "arm64", "aarch64": "arm64"}
HOST_ARCHITECTURE = ARCHITECTURES.get(platform.machine().lower())


def refusal(what: str, instead: str) -> str:
    """The message that refuses a container image on a server started without an engine: what to install and
    configure, and what to do instead."""
    return (f"{what} need a container engine, and this jobforge server runs none: install Docker or Podman, "
            f"start its daemon, and name it with jobforge serve --container-engine docker (or podman). Without "
            f"one, {instead}.")


def problem(engine: str) -> str | None:
    """Why this server cannot run containers with the engine; None when it can."""
    path = shutil.which(engine)
    if path is None:
        return f"{engine} is not installed on this host: install Docker or Podman and start its daemon."
    try:
        checked = subprocess.run([path, "info", "--format", "{{json .}}"], capture_output=True, text=True,
                                 timeout=CHECK_SECONDS, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"'{engine} info' could not run ({err}): start the {engine} daemon."
    if checked.returncode != 0:
        reason = (checked.stderr.strip().splitlines() or [f"exit status {checked.returncode}"])[-1]
        return f"'{engine} info' failed ({reason}): start the {engine} daemon, or install Podman."
    return None


class EngineError(OSError):
    """The engine could not do what it was asked; the message is its own."""


@dataclass(frozen=True)
class Image:
    """An image the engine has: what it was named by, and what a container of it runs by default."""

    reference: str
    id: str  # the engine's image ID: what a container is started from, whatever the reference names later
    digest: str  # sha256:<hex> of its manifest where the engine knows it, else its ID
    entrypoint: tuple[str, ...]
    command: tuple[str, ...]
    working_dir: str
    architecture: str  # as Lambda names it: x86_64 or arm64

    @property
    def repository(self) -> str:
        """The reference without its tag or digest."""
        name = self.reference.split("@", 1)[0]
        last = name.rsplit("/", 1)
        if ":" in last[-1]:
            name = name[: name.rindex(":")]
        return name

    @property
    def resolved_uri(self) -> str:
        return f"{self.repository}@{self.digest}"


@dataclass
class ContainerSpec:
    """One container to run: its image, how it starts, what it is given and what holds it in."""

    name: str
    image: str  # an image ID or reference
    env: dict[str, str]  # passed in a file only the server reads, never on the engine's command line
    memory_mb: int
    entrypoint: list[str] | None = None  # overrides the image's; arguments then given in full
    args: list[str] = field(default_factory=list)
    working_dir: str | None = None
    user: str | None = None
    read_only: bool = False
    tmpfs: dict[str, str] = field(default_factory=dict)  # path -> mount options
    # Limits given (the engine's defaults otherwise; Docker and Podman drop them all once one is given).
    open_files: int | None = None
    processes: int | None = None


def configured(settings) -> "ContainerEngine | None":
    """The engine the server was started with (``Settings.container_engine``), if any."""
    name = getattr(settings, "container_engine", None)
    return ContainerEngine(name, settings.data_dir) if name else None


class ContainerEngine:
    """The engine's command line, for the containers of this server (``owner``: its data dir's label)."""

    def __init__(self, name: str, data_dir):
        if name not in ENGINES:
            raise ValueError(f"unknown container engine {name}")
        self.name = name
        self.path = shutil.which(name) or name
        self.owner = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
        self.host_alias = HOST_ALIAS[name]
        self.env_dir = Path(data_dir) / "container-env"  # each starting container's variables, until it runs

    def _run(self, *args: str, timeout: float = COMMAND_SECONDS) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([self.path, *args], capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise EngineError(f"'{self.name} {args[0]}' did not answer within {timeout:.0f} s") from None

    # -- images ------------------------------------------------------------------------
    def image(self, reference: str) -> Image | None:
        """The image the engine has under this reference (or ID); None when it has none."""
        found = self._run("image", "inspect", reference)
        if found.returncode != 0:
            return None
        try:
            document = json.loads(found.stdout)[0]
        except (ValueError, IndexError, KeyError):
            return None
        config = document.get("Config") or {}
        digest = document.get("Digest") or ""
        if not digest.startswith("sha256:"):
            repo_digests = [d.split("@", 1)[1] for d in document.get("RepoDigests") or [] if "@" in d]
            digest = repo_digests[0] if repo_digests else document["Id"]
        image_id = document["Id"] if document["Id"].startswith("sha256:") else f"sha256:{document['Id']}"
        return Image(reference=reference, id=image_id, digest=digest,
                     entrypoint=tuple(config.get("Entrypoint") or ()), command=tuple(config.get("Cmd") or ()),
                     working_dir=config.get("WorkingDir") or "",
                     architecture=ARCHITECTURES.get(document.get("Architecture", ""), document.get("Architecture",
                                                                                                    "")))

    # -- containers --------------------------------------------------------------------
    def start(self, spec: ContainerSpec, output: int) -> subprocess.Popen:
        """Run the container attached: the engine's process lives as long as the container, which writes its
        standard output and error to the file descriptor ``output`` (directly, where Podman passes it through)."""
        command = [self.path, "run", "--rm", "--name", spec.name, "--label", f"{OWNER_LABEL}={self.owner}",
                   "--pull", "never", "--memory", f"{spec.memory_mb}m", "--memory-swap", f"{spec.memory_mb}m",
                   "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
        if self.name == "podman":
            command += ["--log-driver", "passthrough"]
        else:
            command += ["--log-driver", "none", "--add-host", f"{self.host_alias}:host-gateway"]
        if spec.open_files is not None:
            command += ["--ulimit", f"nofile={spec.open_files}:{spec.open_files}"]
        if spec.processes is not None:  # its user's processes and threads, and its own (a cgroup's)
            command += ["--ulimit", f"nproc={spec.processes}:{spec.processes}", "--pids-limit", str(spec.processes)]
        if spec.user is not None:
            command += ["--user", spec.user]
        if spec.read_only:
            command.append("--read-only")
        for path, options in spec.tmpfs.items():
            command += ["--tmpfs", f"{path}:{options}"]
        if spec.working_dir:
            command += ["--workdir", spec.working_dir]
        command += ["--env-file", str(self._write_env(spec))]
        for name, value in spec.env.items():
            if "\n" in value or "\r" in value:  # a line of its own in the file could not hold it
                command += ["--env", f"{name}={value}"]
        if spec.entrypoint is not None:
            command += ["--entrypoint", spec.entrypoint[0] if spec.entrypoint else ""]
        command.append(spec.image)
        command += (spec.entrypoint[1:] if spec.entrypoint else []) + list(spec.args)
        try:
            return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                                    start_new_session=True)
        except BaseException:
            self.drop_env(spec.name)
            raise

    def _write_env(self, spec: ContainerSpec) -> Path:
        self.env_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.env_dir / f"{spec.name}.env"
        lines = "".join(f"{name}={value}\n" for name, value in spec.env.items()
                        if "\n" not in value and "\r" not in value)
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
            file.write(lines)
        return path

    def drop_env(self, name: str) -> None:
        """Remove the container's variables once the engine has read them (it has when the container runs)."""
        (self.env_dir / f"{name}.env").unlink(missing_ok=True)

    def state(self, name: str) -> tuple[int, str] | None:
        """(main process ID, address on its network) of a running container; None while it has neither."""
        found = self._run("container", "inspect", "--format", "{{.State.Pid}} {{.NetworkSettings.IPAddress}}",
                          name, timeout=10)
        parts = found.stdout.split() if found.returncode == 0 else []
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) <= 0:
            return None
        return int(parts[0]), parts[1]

    def remove(self, name: str) -> None:
        """Kill and remove the container, if it is still there."""
        self._run("rm", "--force", *(["--time", "0"] if self.name == "podman" else []), name)

    def sweep(self, prefix: str) -> int:
        """Remove this server's containers named with prefix (those a previous server left running)."""
        listed = self._run("ps", "--all", "--filter", f"label={OWNER_LABEL}={self.owner}", "--format",
                           "{{.Names}}")
        names = [name for name in listed.stdout.split() if name.startswith(prefix)]
        for name in names:
            self.remove(name)
        for left in self.env_dir.glob(f"{prefix}*.env") if self.env_dir.is_dir() else ():
            left.unlink(missing_ok=True)
        return len(names)

