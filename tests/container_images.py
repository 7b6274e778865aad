"""Container images built here for the container tests, with no registry: a base image holding this host's
Python (its interpreter, standard library and the shared libraries they load, at the same paths), and images
built FROM it with the code and the installed packages a test names.

``engine()`` finds a container engine that can build and run such an image (Podman first, then Docker), or
says why none can, for the tests to skip with that reason.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
from pathlib import Path

from packaging.requirements import Requirement

from jobforge.execution import container_engine

BASE = "localhost/jobforge-test-python"
LEFT_OUT = ("site-packages", "dist-packages", "test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip",
            "__pycache__", "lib2to3", "config-*", "*.a")
PYTHON = str(Path(sys.executable).resolve())


def _run(engine: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([engine, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _libraries(paths) -> set[str]:
    """The shared libraries the ELF files load (as ldd resolves them here)."""
    found = set()
    for path in paths:
        listed = subprocess.run(["ldd", str(path)], capture_output=True, text=True).stdout
        found.update(re.findall(r"(/\S+\.so[^\s]*)", listed))
    return found


def _copy_with_libraries(root: Path, files) -> None:
    for library in _libraries(files):
        for path in {library, str(Path(library).resolve())}:
            target = root / path.lstrip("/")
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)


def _python_root(root: Path) -> None:
    """This host's Python at its own paths, without its installed packages."""
    prefix = sys.base_prefix
    stdlib = Path(sysconfig.get_paths(vars={"base": prefix, "platbase": prefix, "installed_base": prefix,
                                            "installed_platbase": prefix})["stdlib"])
    shutil.copytree(stdlib, root / stdlib.relative_to("/"), ignore=shutil.ignore_patterns(*LEFT_OUT))
    target = root / PYTHON.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(PYTHON, target)
    _copy_with_libraries(root, [PYTHON, *(root / stdlib.relative_to("/")).rglob("*.so")])
    (root / "tmp").mkdir(mode=0o1777, exist_ok=True)
    (root / "tmp").chmod(0o1777)


def _build(engine: str, tag: str, context: Path, containerfile: str) -> None:
    (context / "Containerfile").write_text(containerfile)
    built = _run(engine, "build", "--tag", tag, "--file", str(context / "Containerfile"), str(context))
    if built.returncode != 0:
        raise RuntimeError(f"{engine} build {tag} failed: {built.stderr.strip()[-2000:]}")


def base_image(engine: str) -> str:
    """This host's Python as an image (built once per Python build)."""
    tag = f"{BASE}:{hashlib.sha256(PYTHON.encode() + sys.version.encode()).hexdigest()[:12]}"
    if _run(engine, "image", "inspect", tag).returncode == 0:
        return tag
    with tempfile.TemporaryDirectory() as directory:
        context = Path(directory)
        _python_root(context / "root")
        _build(engine, tag, context, f'FROM scratch\nCOPY root/ /\nENV PATH=/usr/local/bin:/usr/bin:/bin\n'
                                     f'ENTRYPOINT ["{PYTHON}"]\n')
    return tag


def build(engine: str, tag: str, files: dict[str, str], *, packages: tuple[str, ...] = (),
          entrypoint: list[str] | None = None, command: list[str] | None = None, workdir: str | None = None,
          env: dict[str, str] | None = None) -> str:
    """An image FROM the base with the files (path in the image -> text) and the installed distributions
    (their files under /opt/packages, on PYTHONPATH); its ID."""
    base = base_image(engine)
    with tempfile.TemporaryDirectory() as directory:
        context = Path(directory)
        root = context / "root"
        root.mkdir()
        for path, text in files.items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(text))
        shared = []
        for distribution in _with_dependencies(packages):
            for file in distribution.files or ():
                source = Path(distribution.locate_file(file))
                if "__pycache__" in file.parts or not source.is_file():
                    continue
                target = root / "opt" / "packages" / file
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
                if source.suffix == ".so":
                    shared.append(source)
        _copy_with_libraries(root, shared)
        for path in root.rglob("*"):  # readable by any user, as Lambda's is not root
            path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
        lines = [f"FROM {base}", "COPY root/ /", "ENV PYTHONPATH=/opt/packages"]
        lines += [f"ENV {name}={value}" for name, value in (env or {}).items()]
        if workdir:
            lines.append(f"WORKDIR {workdir}")
        if entrypoint is not None:
            lines.append(f"ENTRYPOINT {_json_list(entrypoint)}")
        if command is not None:
            lines.append(f"CMD {_json_list(command)}")
        _build(engine, tag, context, "\n".join(lines) + "\n")
    return _run(engine, "image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()


def _with_dependencies(names) -> list:
    """The installed distributions named and those they require (without extras)."""
    found, todo = {}, list(names)
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in found:
            continue
        found[key] = importlib.metadata.distribution(name)
        for requirement in map(Requirement, found[key].requires or ()):
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return list(found.values())


def _json_list(items: list[str]) -> str:
    import json

    return json.dumps(items)


def remove(engine: str, *tags: str) -> None:
    _run(engine, "rmi", "--force", *tags)


@functools.cache
def engine() -> tuple[str | None, str]:
    """(engine, "") for the first engine that runs this host's Python in a container, else (None, why not)."""
    reasons = []
    for name in ("podman", "docker"):
        problem = container_engine.problem(name)
        if problem is not None:
            reasons.append(f"{name}: {problem}")
            continue
        try:
            base = base_image(name)
            ran = _run(name, "run", "--rm", base, "-c", "print('ran')", timeout=120)
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as err:
            reasons.append(f"{name}: {err}")
            continue
        if ran.returncode == 0 and ran.stdout.strip() == "ran":
            return name, ""
        reasons.append(f"{name} cannot run a container here: {(ran.stderr.strip().splitlines() or ['?'])[-1]}")
    return None, "no working container engine: " + "; ".join(reasons)
