"""An AgentCore runtime session of a container runtime (``containerConfiguration``): the runtime's image run by
the container engine, one container per session, serving AgentCore's contract (``POST /invocations``,
``GET /ping``) on port 8080 of its own address, which the server connects to.

The container runs as its image says (entry point, command, user, working directory), with no
capabilities, the session's memory as its memory limit (no swap), the runtime's environment variables and
the temporary credentials of its role, ``AWS_ENDPOINT_URL`` pointing at jobforge through a relay only it
can use.
"""

from __future__ import annotations

import socket
from typing import Callable
from urllib.parse import urlsplit

from jobforge.core import agent_runtimes as records
from jobforge.execution.container_engine import ContainerEngine, ContainerSpec
from jobforge.execution.container_gate import Gate, Relay
from jobforge.execution.container_run import RunningContainer

AGENT_PORT = 8080  # the AgentCore service contract's port


def image_of(version: records.Version) -> str | None:
    """The container URI of a container runtime's version; None for a code runtime's."""
    container = version.config["agentRuntimeArtifact"].get("containerConfiguration")
    return container["containerUri"] if container else None


def environment(runtime: records.AgentRuntime, credential, variables: dict | None) -> dict[str, str]:
    env = {
        "AWS_REGION": runtime.region, "AWS_DEFAULT_REGION": runtime.region,
        "AWS_ACCESS_KEY_ID": credential.access_key_id, "AWS_SECRET_ACCESS_KEY": credential.secret_key,
        "AWS_SESSION_TOKEN": credential.session_token, "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "OTEL_RESOURCE_ATTRIBUTES": f"service.name={runtime.name},cloud.resource_id={runtime.arn}",
    }
    env.update(variables or {})
    return env


class AgentContainer:
    def __init__(self, engine: ContainerEngine, name: str, image: str, env: dict[str, str], endpoint_url: str,
                 memory_mb: int, on_output: Callable[[bytes | None], None]):
        gate = Gate()
        server = urlsplit(endpoint_url)
        relay = Relay(gate, (server.hostname, server.port))
        env = dict(env, AWS_ENDPOINT_URL=f"{server.scheme}://{engine.host_alias}:{relay.port}")
        spec = ContainerSpec(name=name, image=image, env=env, memory_mb=memory_mb)
        self.container = RunningContainer(engine, spec, gate, on_output, attachments=(relay,))

    def start(self, timeout: float) -> None:
        """Start the container; OSError when the engine cannot (see ``exit_code`` for one that ended at once)."""
        try:
            self.container.start(timeout)
        except BaseException:
            self.stop()
            raise

    def connect(self, timeout: float) -> socket.socket:
        if self.container.address is None:
            raise ConnectionRefusedError("the session's container is not running")
        return socket.create_connection((self.container.address, AGENT_PORT), timeout=timeout)

    def exit_code(self) -> int | None:
        return self.container.exit_code()

    def stop(self) -> None:
        self.container.stop()
