"""One unprivileged OS user per account for its jobs (when the server runs as root).

The ids are numeric, with no passwd entry: taken from a range no distribution
hands out (systemd leaves 1879048192-2147352575 unused), skipping any id the
host's user or group database knows, and recorded in ``DATA_DIR/job-users.json``
so that an account keeps its id across restarts and the files its jobs left.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

FIRST_ID = 1_900_000_000
LAST_ID = 2_147_352_575


@dataclass(frozen=True)
class JobUser:
    uid: int
    gid: int
    name: str  # USER and LOGNAME of the job's processes

    def as_dict(self) -> dict:
        return {"uid": self.uid, "gid": self.gid, "name": self.name}


class JobUsers:
    def __init__(self, path: Path):
        self.path = path
        try:
            self._ids: dict[str, int] = json.loads(path.read_text())
        except FileNotFoundError:
            self._ids = {}

    def for_account(self, account_id: str) -> JobUser:
        uid = self._ids.get(account_id)
        if uid is None:
            uid = self._allocate()
            self._ids[account_id] = uid
            self._save()
        return JobUser(uid, uid, f"jobforge-{account_id}")

    def _allocate(self) -> int:
        candidate = max(self._ids.values(), default=FIRST_ID - 1) + 1
        while _known_to_host(candidate):
            candidate += 1
        if candidate > LAST_ID:
            raise OSError(f"No unused user id left for jobs in {FIRST_ID}-{LAST_ID}")
        return candidate

    def _save(self) -> None:
        staged = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(self._ids, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staged, self.path)


def _known_to_host(uid: int) -> bool:
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(uid)
            return True
        except KeyError:
            pass
    return False
