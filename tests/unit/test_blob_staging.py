"""The staging area both blob stores write bodies to before they become blobs."""

from __future__ import annotations

import hashlib

from jobforge.core.blobs import LocalBlobs


def test_a_staged_body_is_hashed_and_becomes_a_blob_once_committed(tmp_path):
    blobs = LocalBlobs(tmp_path)
    staging = blobs.staging(sha256=True)
    staging.write(b"hello ")
    staging.write(b"world")
    body = staging.finish()
    assert body.path.parent == blobs.tmp and body.size == 11
    assert body.md5 == hashlib.md5(b"hello world").hexdigest()
    assert body.sha256 == hashlib.sha256(b"hello world").hexdigest()
    blob = blobs.commit(body.path)
    assert not body.path.exists() and list(blobs.tmp.iterdir()) == []
    opened = blobs.open(blob)
    try:
        assert b"".join(opened.read(0, 11)) == b"hello world"
        copy = opened.copy()  # staged beside uploads, then committed
    finally:
        opened.close()
    assert copy != blob and blobs.path(copy).read_bytes() == b"hello world"


def test_sweeping_drops_what_interrupted_uploads_left_and_abort_leaves_nothing(tmp_path):
    blobs = LocalBlobs(tmp_path)
    left = blobs.staging()
    left.write(b"cut short")
    left.file.close()  # the server stopped mid-upload
    aborted = blobs.staging()
    aborted.write(b"refused")
    aborted.abort()
    assert [path.name for path in blobs.tmp.iterdir()] == [left.path.name]
    blobs.sweep_staging()
    assert list(blobs.tmp.iterdir()) == []
