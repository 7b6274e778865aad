"""The sample payloads a job sends: ContainerConfig.PayloadConfig's archive, unpacked into request bodies.

SamplePayloadUrl names one gzip-compressed tar archive; each regular file in it is one request body. With one
SupportedContentType every body is sent as it; with several, a body goes as the type its file name suggests
when that type is listed, else as the first.
"""

from __future__ import annotations

import mimetypes
import tarfile
from pathlib import Path

from jobforge.execution.context import JobContext, WorkloadError


def fetch(ctx: JobContext, payload: dict, folder: Path) -> list[tuple[Path, str]]:
    archive = ctx.download(payload["url"], folder / "payload.tar.gz")
    return unpack(archive, folder / "bodies", payload["content_types"], payload["url"])


def unpack(archive: Path, folder: Path, content_types: list[str], url: str) -> list[tuple[Path, str]]:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            tar.extractall(folder, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError) as err:
        raise WorkloadError(f"SamplePayloadUrl {url} is not a gzip-compressed tar archive: {err}") from None
    bodies = sorted(folder / m.name for m in members)
    if not bodies:
        raise WorkloadError(f"The payload archive {url} holds no files: each file is one request body.")
    return [(body, _content_type(body, content_types)) for body in bodies]


def _content_type(body: Path, content_types: list[str]) -> str:
    guessed, _ = mimetypes.guess_type(body.name)
    return guessed if guessed in content_types else content_types[0]
