"""Keep a local checkpoint directory and an S3 prefix in step.

The worker syncs every job's ``ctx.checkpoint_dir`` with the per-job prefix
the scheduler gives it, so an attempt that resumes on another node (or after
its directory was lost) starts from the last checkpoint; Braket hybrid jobs
also sync it with their own ``checkpointConfig.s3Uri``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from jobforge.execution.context import JobContext, NoSuchData


class CheckpointSync:
    """``delete`` (given for jobforge's own per-job copy, not for a user's ``checkpointConfig``) removes from
    S3 what the job removed locally, so a job that keeps only its latest checkpoints keeps only those there."""

    def __init__(self, ctx: JobContext, local_dir: Path, s3_uri: str | None,
                 delete: Callable[[str], None] | None = None):
        self._ctx = ctx
        self._dir = local_dir
        self._prefix = s3_uri.rstrip("/") + "/" if s3_uri else None
        self._delete = delete
        self._uploaded: dict[str, tuple[int, int]] = {}

    def restore(self) -> bool:
        """Fill an empty checkpoint directory from S3; True when something was restored.

        A directory that already holds files (the same job resumed after a
        restart) is newer than its S3 copy and is kept. An empty one is filled
        from S3, which covers a resumed job whose local state was lost and a
        new job whose checkpoints were copied from another job.
        """
        self._dir.mkdir(parents=True, exist_ok=True)
        if not self._prefix or any(self._dir.iterdir()):
            return False
        try:
            self._ctx.download(self._prefix, self._dir)
        except NoSuchData:  # nothing under the prefix yet
            return False
        self._uploaded = dict(self._files())
        return bool(self._uploaded)

    def push(self) -> None:
        """Upload every file that changed since it was last uploaded, then (with ``delete``) remove what the
        job removed."""
        if not self._prefix:
            return
        present = dict(self._files())
        for relative, signature in present.items():
            if self._uploaded.get(relative) != signature:
                try:
                    self._ctx.upload(self._dir / relative, self._prefix + relative)
                except FileNotFoundError:  # removed by the job meanwhile
                    continue
                self._uploaded[relative] = signature
        if self._delete is not None:
            for relative in [name for name in self._uploaded if name not in present]:
                self._delete(self._prefix + relative)
                del self._uploaded[relative]

    def _files(self) -> list[tuple[str, tuple[int, int]]]:
        """(relative name, (mtime, size)) of every file, oldest first: a pointer a job writes after the
        checkpoint it names (such as latest.json) reaches S3 after that checkpoint does."""
        found = []
        for path in self._dir.rglob("*"):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            if path.is_file():
                found.append((stat.st_mtime_ns, path.relative_to(self._dir).as_posix(), stat.st_size))
        return [(name, (mtime, size)) for mtime, name, size in sorted(found)]
