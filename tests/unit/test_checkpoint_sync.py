"""Keeping a job's checkpoint directory and its object-store copy in step."""

from __future__ import annotations

import os
import shutil

from jobforge.execution.checkpoints import CheckpointSync
from jobforge.execution.context import LocalJobContext

PREFIX = "s3://checkpoints/job-1/"


class RecordingContext(LocalJobContext):
    def upload(self, path, uri):
        self.uploaded.append(uri.removeprefix(PREFIX))
        super().upload(path, uri)


def _context(tmp_path):
    ctx = RecordingContext(s3_root=tmp_path / "s3", work_dir=tmp_path / "work", checkpoint_dir=tmp_path / "ckpt")
    ctx.uploaded = []
    return ctx


def _save(root, step: int, when: int) -> None:
    """A checkpoint folder, then the pointer naming it, written in that order as a training job does."""
    folder = root / f"step-{step}"
    folder.mkdir(parents=True)
    (folder / "tensors.pt").write_bytes(b"t" * step)
    os.utime(folder / "tensors.pt", ns=(when, when))
    (root / "latest.json").write_text(f'{{"folder": "step-{step}"}}')
    os.utime(root / "latest.json", ns=(when + 1, when + 1))


def test_a_pointer_reaches_the_store_after_the_checkpoint_it_names(tmp_path):
    ctx = _context(tmp_path)
    _save(ctx.checkpoint_dir, 1, 1_000_000_000)
    CheckpointSync(ctx, ctx.checkpoint_dir, PREFIX).push()
    assert ctx.uploaded == ["step-1/tensors.pt", "latest.json"]  # not in name order


def test_what_the_job_removed_is_removed_from_its_own_copy_only(tmp_path):
    ctx = _context(tmp_path)
    deleted = []
    sync = CheckpointSync(ctx, ctx.checkpoint_dir, PREFIX, delete=deleted.append)
    users_copy = CheckpointSync(ctx, ctx.checkpoint_dir, "s3://mine/ckpt/")
    _save(ctx.checkpoint_dir, 1, 1_000_000_000)
    sync.push(), users_copy.push()
    shutil.rmtree(ctx.checkpoint_dir / "step-1")
    _save(ctx.checkpoint_dir, 2, 2_000_000_000)
    ctx.uploaded.clear()
    sync.push(), users_copy.push()
    assert deleted == [PREFIX + "step-1/tensors.pt"]
    assert ctx.uploaded.count("step-2/tensors.pt") == 1 and "step-1/tensors.pt" not in ctx.uploaded
    sync.push()
    assert deleted == [PREFIX + "step-1/tensors.pt"]  # deleted once
