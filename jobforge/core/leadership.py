"""Which server schedules jobs: one at a time, as the database decides.

Several servers may share one PostgreSQL database. Each serves every request,
but only the one holding the scheduling lease admits, stops and reconciles
jobs. The lease is a session-level advisory lock held on a connection of its
own: it goes with that connection when its server dies (the server's host
closes the socket, or TCP keepalives find the host gone within seconds), and
another server takes it at its next try. A server that finds its connection
broken stops scheduling at once, before another can take the lease.

SQLite allows one server per database file, so that server always schedules.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

log = logging.getLogger("jobforge.leadership")
LOCK_KEY = 0x6A6F62666F7267  # "jobforg": the advisory lock key no other user of the database is likely to take
# libpq's keepalives: a lease holder whose host is gone is found out in about 5 + 3 × 2 seconds.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}


class SchedulingLease:
    def __init__(self, engine: sa.Engine):
        self.shared = engine.dialect.name == "postgresql"
        self._engine = sa.create_engine(engine.url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT",
                                        connect_args=KEEPALIVES) if self.shared else None
        self._held: sa.Connection | None = None

    def held(self) -> bool:
        """Whether this server schedules: it holds the lease (still), or has just taken it."""
        if not self.shared:
            return True
        if self._held is not None:
            try:
                self._held.execute(sa.text("SELECT 1"))
                return True
            except sa.exc.DBAPIError as err:
                log.warning("Lost the scheduling lease (its database connection broke: %s)", err)
                self.release()
                return False
        try:
            connection = self._engine.connect()
        except sa.exc.DBAPIError as err:
            log.warning("Cannot reach the database for the scheduling lease: %s", err)
            return False
        try:
            taken = connection.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY}).scalar()
        except sa.exc.DBAPIError:
            taken = False
        if not taken:
            connection.close()
            return False
        self._held = connection
        return True

    def release(self) -> None:
        if self._held is not None:
            try:
                self._held.close()  # the lock goes with the session
            except sa.exc.DBAPIError:
                pass
            self._held = None
