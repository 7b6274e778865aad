"""What a compilation job leaves: the artifact's manifest, the verification report, the output tarball."""

from __future__ import annotations

import hashlib
import json
import platform
import tarfile
from pathlib import Path

from jobforge.runtime import FORMAT, MANIFEST
from jobforge.workloads.compile.backends import Built
from jobforge.workloads.compile.options import Options
from jobforge.workloads.compile.sources import Source, versions
from jobforge.workloads.compile.targets import Target

REPORT = "report.json"


def manifest(source: Source, target: Target, options: Options, built: Built) -> dict:
    return {
        "format": FORMAT, "backend": built.backend, "files": built.files, built.backend: built.settings,
        "inputs": [spec.to_json() for spec in source.inputs], "outputs": source.outputs,
        "precision": options.precision, "target": target.to_json(), "framework": source.framework,
        "compiler_options": options.to_json(),
        "versions": {**source.versions, **built.versions, **versions("numpy"), "python": platform.python_version()},
    }


def package(built: Built, manifest_: dict, report: dict, tarball: Path) -> Path:
    """The artifact's files with manifest.json and report.json, as a .tar.gz."""
    (built.folder / MANIFEST).write_text(json.dumps(manifest_, indent=2))
    (built.folder / REPORT).write_text(json.dumps(report, indent=2))
    with tarfile.open(tarball, "w:gz") as tar:
        for path in sorted(built.folder.iterdir()):
            tar.add(path, arcname=path.name)
    return tarball


def digest(path: Path) -> str:
    """BLAKE2b of the output tarball, as ModelDigests.ArtifactDigest ("a BLAKE2 hash value")."""
    hasher = hashlib.blake2b()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(chunk)
    return f"blake2b:{hasher.hexdigest()}"


def log_lines(report: dict) -> list[str]:
    """The report as the job's log shows it: one line per candidate."""
    original = report["original"]
    lines = [f"original: {original['runs_as']}" + (
        f", median {original['median_us']:.1f} us, p90 {original['p90_us']:.1f} us" if "median_us" in original else "")]
    for item in report["candidates"]:
        line = f"{item['backend']}: {item['status']}"
        if "error" in item:
            line += f", max abs diff {item['max_abs_diff']:.3g} (relative {item['error']:.3g})"
        if "median_us" in item:
            line += f", median {item['median_us']:.1f} us, p90 {item['p90_us']:.1f} us, " \
                    f"{item['speedup']:.2f}x the original"
        if item.get("reason"):
            line += f" - {item['reason']}"
        if item.get("notes"):
            line += f" ({'; '.join(item['notes'])})"
        lines.append(line)
    return lines
