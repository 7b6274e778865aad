"""A Lambda function's execution environment, inside its confined process: the Python runtime's loop.

Started by ``confined_start`` with the function's settings. It imports the
handler's module from the function's code directory (the init phase), says
whether that worked, then answers invocations one at a time on its control
socket: ``{"request_id", "deadline_ms", "invoked_function_arn", "client_context",
"identity"}`` with the event as the body, answered by ``{"request_id",
"status": "ok" | "error", "max_memory_kb", "log"}`` with the result (or the
error document) as the body. Errors are written as the AWS Python runtime
writes them (``errorMessage``, ``errorType``, ``requestId``, ``stackTrace``).

The function's standard output and error are its log; after each invocation
they are flushed and an end marker is written to them, so that the server
knows it has read every line the invocation printed before it answers.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import resource
import signal
import sys
import time
import traceback

from jobforge.execution import frames

MAX_EVENT = 7 * 1024 * 1024


END_MARKER = b"\0jobforge-invocation-end "


def end_marker(request_id: str) -> bytes:
    return END_MARKER + request_id.encode() + b"\n"


def error_document(kind: str, message: str, request_id: str = "", stack: list[str] | None = None) -> dict:
    return {"errorMessage": message, "errorType": kind, "requestId": request_id, "stackTrace": stack or []}


def log_text(error: dict) -> str:
    """The log event the Python runtime writes for an error."""
    lines = [f"[ERROR] {error['errorType']}: {error['errorMessage']}" if error["errorMessage"]
             else f"[ERROR] {error['errorType']}"]
    if error.get("stackTrace") is not None:
        lines.append("Traceback (most recent call last):")
        for element in error["stackTrace"]:
            lines.extend(element.splitlines() or [""])
    return "\n".join(lines)


class LambdaContext:
    """The ``context`` object of the AWS Python runtime."""

    def __init__(self, request: dict, settings: dict):
        self.aws_request_id = request["request_id"]
        self.function_name = settings["function_name"]
        self.function_version = settings["function_version"]
        self.invoked_function_arn = request["invoked_function_arn"]
        self.memory_limit_in_mb = str(settings["memory_mb"])
        self.log_group_name = settings["log_group"]
        self.log_stream_name = settings["log_stream"]
        self.identity = _Identity(request.get("identity") or {})
        self.client_context = _ClientContext(request["client_context"]) if request.get("client_context") else None
        self._deadline_ms = request["deadline_ms"]

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_ms - time.time() * 1000))

    def log(self, message: str) -> None:
        sys.stdout.write(message)


class _Identity:
    def __init__(self, identity: dict):
        self.cognito_identity_id = identity.get("cognitoIdentityId")
        self.cognito_identity_pool_id = identity.get("cognitoIdentityPoolId")


class _ClientContext:
    def __init__(self, document: dict):
        self.client = document.get("client")
        self.custom = document.get("custom")
        self.env = document.get("env")


class _RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record):
        record.aws_request_id = self.request_id
        return True


def _install_logging() -> _RequestIdFilter:
    """The root logger's handler, as the runtime configures it: one event per record, its lines joined by \\r."""

    class LambdaLoggerHandler(logging.Handler):
        def emit(self, record):
            sys.stdout.write(self.format(record).replace("\n", "\r") + "\n")

    request_filter = _RequestIdFilter()
    handler = LambdaLoggerHandler()
    handler.setFormatter(logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s", "%Y-%m-%dT%H:%M:%S"))
    handler.formatter.converter = time.gmtime
    handler.addFilter(request_filter)
    logging.getLogger().addHandler(handler)
    return request_filter


def load_handler(name: str):
    """The handler function, or the error document the runtime answers when it cannot be loaded."""
    try:
        module_name, function_name = name.rsplit(".", 1)
    except ValueError as err:
        return None, error_document("Runtime.MalformedHandlerName", f"Bad handler '{name}': {err}")
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as err:
        return None, error_document("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {err}")
    except SyntaxError as err:
        return None, error_document("Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {err}",
                                    stack=traceback.format_list(traceback.extract_tb(err.__traceback__))[1:])
    except Exception as err:
        stack = traceback.format_list(traceback.extract_tb(err.__traceback__)[1:])
        return None, error_document(type(err).__name__, str(err), stack=stack)
    handler = getattr(module, function_name, None)
    if handler is None:
        return None, error_document("Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module "
                                    f"'{module_name}'")
    return handler, None


def _max_memory_kb() -> int:
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def _flush_output(request_id: str) -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass
    os.write(1, end_marker(request_id))


def invoke(handler, request: dict, event: bytes, settings: dict) -> tuple[str, bytes, str | None]:
    """(status, body, error log event) of one invocation."""
    request_id = request["request_id"]
    try:
        result = handler(json.loads(event), LambdaContext(request, settings))
    except Exception as err:
        if isinstance(err, MemoryError) and settings["memory_by_rlimit"]:
            os.kill(os.getpid(), signal.SIGKILL)  # past its memory size, as a cgroup's OOM killer would end it
        frames_ = traceback.extract_tb(err.__traceback__)[1:]  # the runtime's own frame is not the function's
        error = error_document(type(err).__name__, str(err), request_id, traceback.format_list(frames_))
        return "error", json.dumps(error).encode(), log_text(error)
    try:
        return "ok", json.dumps(result).encode(), None
    except (TypeError, ValueError) as err:
        error = error_document("Runtime.MarshalError", f"Unable to marshal response: {err}", request_id)
        return "error", json.dumps(error).encode(), log_text(error)


def main(control, settings: dict) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    task_dir = settings["task_dir"]
    os.chdir(task_dir)
    sys.path.insert(0, task_dir)
    request_filter = _install_logging()
    handler, init_error = load_handler(settings["handler"])
    if init_error is not None:
        _flush_output("init")
        frames.send(control, {"init": "error", "log": log_text(init_error)}, json.dumps(init_error).encode())
        return
    _flush_output("init")
    frames.send(control, {"init": "ok"})
    while True:
        received = frames.receive(control, MAX_EVENT)
        if received is None:
            return  # the server closed the environment
        request, event = received
        request_filter.request_id = request["request_id"]
        status, body, log = invoke(handler, request, event, settings)
        _flush_output(request["request_id"])
        frames.send(control, {"request_id": request["request_id"], "status": status, "log": log,
                              "max_memory_kb": _max_memory_kb()}, body)
