"""Agent code archives as AgentCore's direct code deployment takes them: the agent's files beside installed
distributions and their dependencies, laid out as ``pip install --target`` lays them out."""

from __future__ import annotations

import io
import textwrap
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement


def installed_files(names: list[str]) -> dict[str, Path]:
    """The files of installed distributions and their dependencies, by their path in the archive."""
    files, seen, todo = {}, set(), list(names)
    while todo:
        distribution = metadata.distribution(todo.pop())
        if distribution.metadata["Name"].lower() in seen:
            continue
        seen.add(distribution.metadata["Name"].lower())
        for requirement in map(Requirement, distribution.requires or []):
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
        for file in distribution.files or []:
            if file.parts[0] != ".." and "__pycache__" not in file.parts:
                files[file.as_posix()] = Path(file.locate())
    return files


def code_zip(sources: dict[str, str], distributions: list[str]) -> bytes:
    """A .zip of the distributions (with their dependencies) and the sources (name → text, dedented)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, path in installed_files(distributions).items():
            archive.write(path, name)
        for name, text in sources.items():
            archive.writestr(name, textwrap.dedent(text))
    return buffer.getvalue()
