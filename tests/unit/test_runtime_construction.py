"""A runtime built but not started (as ``jobforge accounts create`` builds one beside a running server)
leaves alone the uploads that server is staging."""

from __future__ import annotations

from jobforge.config import Settings
from jobforge.server.runtime import Runtime


def test_a_runtime_not_started_leaves_staged_uploads_alone(tmp_path):
    staging = tmp_path / "data" / "objects" / "tmp"
    staging.mkdir(parents=True)
    upload = staging / "an-upload-in-flight"
    upload.write_bytes(b"part of a body")

    runtime = Runtime(Settings(data_dir=tmp_path / "data"))
    try:
        runtime.create_account("beside-a-server")
    finally:
        runtime.engine.dispose()

    assert upload.read_bytes() == b"part of a body"
