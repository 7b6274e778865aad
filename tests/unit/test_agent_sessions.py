"""AgentCore session bookkeeping without processes: credentials of a dead server's processes revoked by
server and name, the records of a runtime's versions and endpoints, and which idle sessions the reaper ends."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from jobforge.core import accounts
from jobforge.core import agent_runtimes as records
from jobforge.core.store import open_store
from jobforge.execution import agent_host
from jobforge.execution.agent_host import AgentHost, Session


@pytest.fixture
def engine(tmp_path):
    return open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")


def test_credentials_are_revoked_by_server_and_name_prefix(engine):
    account = accounts.create_account(engine, "acme")
    ring = accounts.KeyRing(engine)
    issued = {(server, name): accounts.issue_temporary_credentials(
        engine, account.account_id, "arn:aws:sts::1:assumed-role/r/s", 3600, name, server)
        for name in ("agentcore-1", "agentcore-2", "lambda-env-1", "agentcore_x") for server in ("dead", "alive")}
    for credential in issued.values():
        assert ring.get(credential.access_key_id) is not None  # cached
    ring.revoke_server("dead", "agentcore-")
    assert ring.get(issued["dead", "agentcore-1"].access_key_id) is None
    assert ring.get(issued["dead", "agentcore-2"].access_key_id) is None
    assert ring.get(issued["dead", "lambda-env-1"].access_key_id) is not None
    assert ring.get(issued["dead", "agentcore_x"].access_key_id) is not None  # "-" is no wildcard
    assert all(ring.get(issued["alive", name].access_key_id) is not None  # another server's stay
               for name in ("agentcore-1", "agentcore-2", "lambda-env-1", "agentcore_x"))


def test_versions_and_endpoints(engine):
    runtime = records.create(engine, records.new_key(), "123456789012", "us-east-1", "agent", {"roleArn": "r"},
                             "/code.zip", None)
    assert runtime.runtime_id.startswith("agent-") and len(runtime.runtime_id) == len("agent-") + 10
    first = records.get_version(engine, runtime.id, 1)
    assert first.status == records.CREATING
    assert records.endpoint(engine, runtime.id, "DEFAULT").live_version is None
    records.settle(engine, first, None)
    assert records.endpoint(engine, runtime.id, "DEFAULT").live_version == 1
    pinned = records.add_endpoint(engine, runtime.id, "pinned", 1, True, None)
    second = records.add_version(engine, runtime, {"roleArn": "r"}, "/code.zip")
    assert second.version == 2 and second.status == records.UPDATING
    default = records.endpoint(engine, runtime.id, "DEFAULT")
    assert (default.live_version, default.target_version) == (1, 2)  # serves 1 until 2 is ready
    records.settle(engine, second, "broken")
    assert records.get_version(engine, runtime.id, 2).status == records.UPDATE_FAILED
    assert records.endpoint(engine, runtime.id, "DEFAULT").live_version == 1
    assert records.endpoint(engine, runtime.id, pinned.name).target_version == 1
    with pytest.raises(Exception):
        records.create(engine, records.new_key(), "123456789012", "us-east-1", "agent", {}, "", None)


class _Process:
    def poll(self):
        return None


def test_the_reaper_ends_idle_sessions_unless_their_agent_is_busy(engine, tmp_path, monkeypatch):
    settings = SimpleNamespace(data_dir=tmp_path)
    stopped = []
    keys = SimpleNamespace(revoke_job=lambda name: stopped.append(name))
    host = AgentHost(engine, settings, SimpleNamespace(stop=lambda hosted: None), keys, 8192,
                     SimpleNamespace(server_id="this-server"))
    runtime = SimpleNamespace(id="r")
    version = SimpleNamespace(version=1)

    def session(name: str, idle: int, lifetime: int = 3600, **times) -> Session:
        made = Session(("r", 1, name), runtime, version, "DEFAULT", "stream", idle, lifetime, name=name,
                       hosted=SimpleNamespace(process=_Process(), control=None), **times)
        made.ready.set()
        host._sessions[made.key] = made
        return made

    long_ago = time.monotonic() - 120
    session("idle", 60, last_used=long_ago)
    session("busy", 60, last_used=long_ago)
    session("fresh", 60)
    session("old", 3600, lifetime=60, started_at=long_ago)
    session("working", 60, last_used=long_ago, active=1)
    monkeypatch.setattr(host, "_ping", lambda s: "HealthyBusy" if s.key[2] == "busy" else "Healthy")
    monkeypatch.setattr(agent_host, "REAP_SECONDS", 0.01)
    reaper = threading.Thread(target=host._reap, daemon=True)
    reaper.start()
    deadline = time.monotonic() + 5
    while set(stopped) != {"idle", "old"} and time.monotonic() < deadline:
        time.sleep(0.01)
    host._closed.set()
    reaper.join()
    assert sorted(stopped) == ["idle", "old"]
    assert sorted(key[2] for key in host._sessions) == ["busy", "fresh", "working"]
