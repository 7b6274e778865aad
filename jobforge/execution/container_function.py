"""A Lambda execution environment of a container-image function (PackageType Image): the function's image
run by the container engine, as Lambda runs it, with a Runtime API of its own.

Lambda's contract for images, kept here: the image's entry point (or ``ImageConfig.EntryPoint``) runs a
runtime that polls ``$AWS_LAMBDA_RUNTIME_API`` (AWS's base images run the Runtime Interface Client); the
command (or ``ImageConfig.Command``) is its argument, the handler; the working directory is the image's
(or ``ImageConfig.WorkingDirectory``). The container runs as Lambda's unprivileged user (993:990) with
no capabilities, a read-only root file system and a writable ``/tmp`` of the function's ephemeral storage
size, the function's memory size as its memory limit (no swap), and Lambda's quotas of 1,024 open files
and 1,024 processes and threads. It is given Lambda's environment variables, the function's own, and the
temporary credentials of its role, with ``AWS_ENDPOINT_URL`` pointing at jobforge through a relay only it
can use.
"""

from __future__ import annotations

from typing import Callable
from urllib.parse import urlsplit

from jobforge.core import functions
from jobforge.core.functions import Function
from jobforge.execution.container_engine import ContainerEngine, ContainerSpec
from jobforge.execution.container_gate import Gate, Relay
from jobforge.execution.container_run import RunningContainer
from jobforge.execution.lambda_runtime_api import Answer, RuntimeApi

LAMBDA_USER = "993:990"  # sbx_user1051, whom Lambda runs images as
TASK_ROOT = "/var/task"
RUNTIME_DIR = "/var/runtime"
MAX_OPEN_FILES = 1024
MAX_PROCESSES = 1024


def command_line(function: Function, engine: ContainerEngine) -> tuple[list[str] | None, list[str], str | None]:
    """(entry point override, arguments, working directory) of the function's container. An overridden entry
    point keeps the image's command unless ImageConfig overrides that too, as on Lambda."""
    config = function.image_config or {}
    entrypoint = config.get("EntryPoint") or None
    command = config.get("Command")
    if entrypoint is not None and not command:
        image = engine.image(function.image_id)
        if image is None:
            raise OSError(f"the function's image {function.resolved_image_uri} is no longer on this host's "
                          f"{engine.name}")
        command = list(image.command)
    return entrypoint, list(command or []), config.get("WorkingDirectory") or None


def environment(function: Function, stream: str, credential, runtime_api: str, endpoint: str) -> dict[str, str]:
    """Lambda's environment variables for an image, then the function's own."""
    variables = {
        "AWS_LAMBDA_RUNTIME_API": runtime_api, "LAMBDA_TASK_ROOT": TASK_ROOT, "LAMBDA_RUNTIME_DIR": RUNTIME_DIR,
        "TZ": ":UTC", "AWS_LAMBDA_FUNCTION_NAME": function.name, "AWS_LAMBDA_FUNCTION_VERSION": functions.LATEST,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
        "AWS_LAMBDA_LOG_GROUP_NAME": function.log_group, "AWS_LAMBDA_LOG_STREAM_NAME": stream,
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand", "AWS_REGION": function.region,
        "AWS_DEFAULT_REGION": function.region, "AWS_ACCESS_KEY_ID": credential.access_key_id,
        "AWS_SECRET_ACCESS_KEY": credential.secret_key, "AWS_SESSION_TOKEN": credential.session_token,
        "AWS_ENDPOINT_URL": endpoint, "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    variables.update(function.environment)
    return variables


class FunctionContainer:
    """One environment: the container, the Runtime API it polls and the relay it reaches jobforge by."""

    def __init__(self, engine: ContainerEngine, name: str, function: Function, stream: str, credential,
                 endpoint_url: str, on_output: Callable[[bytes | None], None]):
        gate = Gate()
        self.api = RuntimeApi(gate)
        server = urlsplit(endpoint_url)
        relay = Relay(gate, (server.hostname, server.port))
        entrypoint, args, working_dir = command_line(function, engine)
        variables = environment(function, stream, credential, f"{engine.host_alias}:{self.api.port}",
                                f"{server.scheme}://{engine.host_alias}:{relay.port}")
        spec = ContainerSpec(
            name=name, image=function.image_id, env=variables, memory_mb=function.memory_size,
            entrypoint=entrypoint, args=args, working_dir=working_dir, user=LAMBDA_USER, read_only=True,
            tmpfs={"/tmp": f"rw,size={function.ephemeral_storage}m,mode=1777"}, open_files=MAX_OPEN_FILES,
            processes=MAX_PROCESSES)
        self.container = RunningContainer(engine, spec, gate, on_output, on_exit=self.api.stop_waiting,
                                          attachments=(self.api, relay))

    def start(self, init_timeout: float) -> Answer | str | None:
        """Start the container and wait for its runtime's first ``/next``: "ok", the init error it posted, or
        None (it exited, see ``exit_code``, or did not ask in time). OSError when the engine cannot start it."""
        try:
            self.container.start(init_timeout)
        except BaseException:
            self.stop()
            raise
        return self.api.wait_init(init_timeout)

    def invoke(self, request_id: str, event: bytes, headers: dict[str, str], timeout: float) -> Answer | None:
        return self.api.invoke(request_id, event, headers, timeout)

    def exit_code(self) -> int | None:
        return self.container.exit_code()

    def peak_mb(self) -> int | None:
        return self.container.peak_mb()

    def last_line(self) -> str:
        return self.container.last_line()

    def mark(self, marker: bytes) -> None:
        self.container.mark(marker)

    def stop(self) -> None:
        self.container.stop()
