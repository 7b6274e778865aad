"""Which server hosts each AgentCore runtime session.

A session's state lives in the one process that runs it, on one server. Of servers sharing a database, the
first to receive a session's invocation records itself as the session's host; the others forward the
session's requests to it while it lives, and once its lease has expired (``server_leases``) the next server to
receive one starts the session anew, as AgentCore does when a session's microVM is gone.
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from jobforge.core.store import metadata, reading

agent_sessions = sa.Table(
    "agent_sessions", metadata,
    sa.Column("runtime", sa.String(32), primary_key=True),  # the runtime's record id
    sa.Column("session_id", sa.String(256), primary_key=True),
    sa.Column("server_id", sa.String(32), nullable=False, index=True),
    sa.Column("created_at", sa.Float, nullable=False),
)


def _key(runtime: str, session_id: str):
    return sa.and_(agent_sessions.c.runtime == runtime, agent_sessions.c.session_id == session_id)


def claim(engine: sa.Engine, runtime: str, session_id: str, server_id: str, replacing: str | None = None) -> str:
    """The server that hosts a session: server_id when none did (or when ``replacing``, a server that is gone,
    did), else the one that does."""
    if replacing is not None:
        with engine.begin() as conn:
            conn.execute(agent_sessions.update().where(_key(runtime, session_id),
                                                       agent_sessions.c.server_id == replacing)
                         .values(server_id=server_id, created_at=time.time()))
    else:
        try:
            with engine.begin() as conn:
                conn.execute(agent_sessions.insert().values(runtime=runtime, session_id=session_id,
                                                            server_id=server_id, created_at=time.time()))
            return server_id
        except sa.exc.IntegrityError:
            pass  # hosted already
    with reading(engine) as conn:
        host = conn.execute(sa.select(agent_sessions.c.server_id).where(_key(runtime, session_id))).scalar()
    return host if host is not None else claim(engine, runtime, session_id, server_id)


def host_of(engine: sa.Engine, runtime: str, session_id: str) -> str | None:
    with reading(engine) as conn:
        return conn.execute(sa.select(agent_sessions.c.server_id).where(_key(runtime, session_id))).scalar()


def release(engine: sa.Engine, runtime: str, session_id: str, server_id: str) -> None:
    """A session that ended on its server."""
    with engine.begin() as conn:
        conn.execute(agent_sessions.delete().where(_key(runtime, session_id), agent_sessions.c.server_id == server_id))


def release_server(engine: sa.Engine, server_id: str) -> None:
    """Every session of a server that is gone."""
    with engine.begin() as conn:
        conn.execute(agent_sessions.delete().where(agent_sessions.c.server_id == server_id))
