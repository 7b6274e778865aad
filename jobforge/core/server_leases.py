"""Which servers are alive, as the database says: one lease row per server, renewed by its heartbeat.

Servers sharing one database each own what they start: the credentials of their Lambda environments, agent
sessions and model servers, the model endpoints they deploy, the agent sessions they run, the quantum tasks
and Event invocations they have taken. Each such record names its server's id. A server's lease row names it
and the URL it is reached at; the server renews it every RENEW_SECONDS, and a lease not renewed for
LEASE_SECONDS (by the database's clock, so hosts' clocks need not agree) has expired: its server is taken for
dead, and the first other server to notice claims the row, runs every service's reclaim hook for the dead
server's id (revoke its processes' credentials, deploy its endpoints, run its tasks again...), then deletes
the row. A live server's records are never touched.

A server keeps its id in its data dir, so one restarted on the same data dir reclaims what its previous life
left at once, without waiting for the lease to expire.
"""

from __future__ import annotations

import logging
import threading
import uuid
from pathlib import Path
from typing import Callable

import sqlalchemy as sa

from jobforge.core.store import metadata, reading

log = logging.getLogger("jobforge.servers")

LEASE_SECONDS = 15.0  # a server not heard of for this long is taken for dead
RENEW_SECONDS = 3.0  # how often a server renews its lease and looks for expired ones
ID_FILE = "server-id"

server_leases = sa.Table(
    "server_leases", metadata,
    sa.Column("server_id", sa.String(32), primary_key=True),
    sa.Column("url", sa.String(2048), nullable=False),  # the server's advertised URL
    sa.Column("expires_at", sa.Float, nullable=False),  # seconds since the epoch, by the database's clock
)


class OwnedElsewhere(Exception):
    """A request for what another live server runs (an endpoint it serves, an agent session it hosts): the
    server that received it forwards it there, as it came."""

    def __init__(self, url: str):
        super().__init__(url)
        self.url = url


def database_now(dialect: str):
    """The database's clock, in seconds since the epoch, as an SQL expression."""
    if dialect == "postgresql":
        return sa.cast(sa.extract("epoch", sa.func.clock_timestamp()), sa.Float)
    return sa.literal_column("((julianday('now') - 2440587.5) * 86400.0)", sa.Float)


def server_id_of(data_dir: Path) -> str:
    """The id of the server of a data dir: made on its first start, kept for its later ones."""
    path = data_dir / ID_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        server_id = uuid.uuid4().hex[:16]
        path.write_text(server_id + "\n")
        return server_id


class ServerLeases:
    def __init__(self, engine: sa.Engine, server_id: str, url: str):
        self.engine = engine
        self.server_id = server_id
        self.url = url
        self._now = database_now(engine.dialect.name)
        self._hooks: list[Callable[[str], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def on_reclaim(self, hook: Callable[[str], None]) -> None:
        """hook(server_id) takes over or ends what that dead server owned; it may run more than once for one
        server (a reclaiming server may die too), and on several servers at once: it claims each record in the
        database, never from what it remembers."""
        self._hooks.append(hook)

    def register(self) -> None:
        """Take this server's lease (before its services start: from then on they own what they start)."""
        with self.engine.begin() as conn:
            expires = conn.execute(sa.select(self._now + LEASE_SECONDS)).scalar()
            if conn.execute(server_leases.update().where(server_leases.c.server_id == self.server_id)
                            .values(url=self.url, expires_at=expires)).rowcount == 0:
                conn.execute(server_leases.insert().values(server_id=self.server_id, url=self.url,
                                                           expires_at=expires))

    def start(self) -> None:
        """Renew the lease and reclaim dead servers' leftovers every RENEW_SECONDS, in a thread of its own."""
        self._thread = threading.Thread(target=self._run, name="server-lease", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """A server stopping in order: its lease expires now, so that the others take over what it ran (its
        endpoints, its queued tasks) at once; or it does itself at its next start."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=RENEW_SECONDS)
        try:
            with self.engine.begin() as conn:
                conn.execute(server_leases.update().where(server_leases.c.server_id == self.server_id)
                             .values(expires_at=0.0))
        except sa.exc.DBAPIError as err:
            log.warning("Could not give up this server's lease: %s", err)

    def url_of(self, server_id: str) -> str | None:
        """The URL of a live server (its lease not expired), or None when it is gone."""
        with reading(self.engine) as conn:
            return conn.execute(sa.select(server_leases.c.url).where(
                server_leases.c.server_id == server_id, server_leases.c.expires_at >= self._now)).scalar()

    def alive(self, server_id: str | None) -> bool:
        return server_id == self.server_id or (server_id is not None and self.url_of(server_id) is not None)

    def _run(self) -> None:
        while not self._stop.wait(RENEW_SECONDS):
            try:
                self._renew()
                for server_id in self._expired():
                    if self._claim(server_id):
                        log.warning("Server %s stopped renewing its lease: reclaiming what it owned", server_id)
                        if not self._reclaim(server_id):
                            continue  # its row expires again, and the next try finishes
                        with self.engine.begin() as conn:
                            conn.execute(server_leases.delete().where(server_leases.c.server_id == server_id))
            except sa.exc.DBAPIError as err:
                log.warning("Could not renew this server's lease: %s", err)

    def _renew(self) -> None:
        with self.engine.begin() as conn:
            renewed = conn.execute(server_leases.update().where(server_leases.c.server_id == self.server_id)
                                   .values(expires_at=self._now + LEASE_SECONDS)).rowcount
        if not renewed:  # it lapsed (this server was stalled or cut off) and another reclaimed its records
            log.error("This server's lease had expired and was reclaimed by another server; taking a new one")
            self.register()

    def _expired(self) -> list[str]:
        with reading(self.engine) as conn:
            return list(conn.execute(sa.select(server_leases.c.server_id).where(
                server_leases.c.expires_at < self._now, server_leases.c.server_id != self.server_id)).scalars())

    def _claim(self, server_id: str) -> bool:
        """Whether this server reclaims a dead one's records: the row's expiry pushed out, so that no other
        server starts too; should this one die meanwhile, the row expires again and another finishes."""
        with self.engine.begin() as conn:
            return conn.execute(server_leases.update().where(
                server_leases.c.server_id == server_id, server_leases.c.expires_at < self._now)
                .values(expires_at=self._now + LEASE_SECONDS)).rowcount == 1

    def _reclaim(self, server_id: str) -> bool:
        done = True
        for hook in self._hooks:
            try:
                hook(server_id)
            except Exception:
                log.exception("reclaiming the records of server %s failed", server_id)
                done = False
        return done
