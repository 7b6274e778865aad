"""The input tarball: a gzip-compressed tar archive holding exactly one model file of the framework's kind."""

from __future__ import annotations

import gzip
import tarfile
from pathlib import Path

from jobforge.execution.context import WorkloadError
from jobforge.workloads.compile.frameworks import MODEL_FILES


def unpack(archive: Path, into: Path, s3_uri: str) -> None:
    """Extract the archive (members that would leave ``into`` or are links to outside are refused)."""
    with open(archive, "rb") as raw:
        if raw.read(2) != b"\x1f\x8b":
            raise WorkloadError(f"InputConfig.S3Uri {s3_uri} is not a gzip-compressed tar archive (.tar.gz): "
                                "SageMaker Neo expects the model packed as model.tar.gz.")
    into.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(into, filter="data")
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, OSError) as err:
        raise WorkloadError(f"InputConfig.S3Uri {s3_uri} could not be unpacked as a tar.gz archive: {err}") from None


def model_file(root: Path, framework: str) -> Path:
    """The one model file of the framework under root."""
    suffixes = MODEL_FILES[framework]
    found = sorted(path for path in root.rglob("*") if path.is_file() and path.name.lower().endswith(suffixes)
                   and not path.name.startswith("._"))
    if not found:
        raise WorkloadError(f"The input archive holds no {framework} model: expected one file ending in "
                            f"{', '.join(suffixes)}.")
    if len(found) > 1:
        names = ", ".join(str(path.relative_to(root)) for path in found)
        raise WorkloadError(f"The input archive holds {len(found)} {framework} model files ({names}); "
                            "it must hold exactly one.")
    return found[0]
