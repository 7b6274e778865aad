"""Lambda's pieces without a server: code archives, the control frames, the runtime's error documents, function
identifiers, stored log events, and the supervisor's pooled (not restarted) processes."""

from __future__ import annotations

import io
import json
import socket
import stat
import subprocess
import sys
import time
import zipfile

import pytest

from jobforge.core import functions, log_events
from jobforge.core.store import open_store
from jobforge.execution import frames, function_code, function_worker
from jobforge.execution.supervisor import ProcessSpec, Supervisor


def archive(members: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for name, text in members.items():
            zipped.writestr(name, text)
    return buffer.getvalue()


def test_code_archives_are_checked_as_aws_checks_them(tmp_path):
    good = archive({"app.py": "x = 1\n", "pkg/": "", "pkg/mod.py": "y = 2\n"})
    function_code.check(good)
    with pytest.raises(function_code.CodeError, match="Could not unzip uploaded file"):
        function_code.check(b"not a zip")
    for name, reason in (("../up.py", "'..'"), ("/abs.py", "absolute"), ("a//b.py", "empty path segment")):
        with pytest.raises(function_code.CodeError, match=reason):
            function_code.check(archive({name: "x"}))
    assert function_code.sha256(b"abc") == "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="

    stored = function_code.store(tmp_path / "code", "f1", good)
    assert stored.read_bytes() == good and function_code.store(tmp_path / "code", "f1", good) == stored
    target = tmp_path / "env" / "task"
    function_code.extract(stored, target)
    assert (target / "pkg" / "mod.py").read_text() == "y = 2\n"
    assert stat.S_IMODE((target / "app.py").stat().st_mode) == 0o644
    assert stat.S_IMODE((target / "pkg").stat().st_mode) == 0o755


def test_frames_carry_a_header_and_a_body_and_say_when_the_other_end_closed():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        frames.send(ours, {"request_id": "r1"}, b"\x00payload")
        assert frames.receive(theirs, 1024) == ({"request_id": "r1"}, b"\x00payload")
        frames.send(ours, {}, b"x" * 2048)
        with pytest.raises(frames.BrokenFrame):
            frames.receive(theirs, 1024)
    ours, theirs = socket.socketpair()
    ours.close()
    assert frames.receive(theirs, 1024) is None
    theirs.close()


def test_the_runtime_answers_errors_as_the_aws_python_runtime_does(tmp_path, monkeypatch):
    (tmp_path / "good.py").write_text("def handler(event, context):\n    raise KeyError(event['k'])\n")
    (tmp_path / "sets.py").write_text("def handler(event, context):\n    return {1}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    request = {"request_id": "req-1", "deadline_ms": time.time() * 1000 + 3000, "invoked_function_arn": "arn"}
    settings = {"function_name": "f", "function_version": "$LATEST", "memory_mb": 128, "log_group": "/aws/lambda/f",
                "log_stream": "s", "memory_by_rlimit": False}

    handler, error = function_worker.load_handler("good.handler")
    status, body, log = function_worker.invoke(handler, request, b'{"k": "missing"}', settings)
    document = json.loads(body)
    assert status == "error" and document["errorType"] == "KeyError" and document["requestId"] == "req-1"
    assert document["errorMessage"] == "'missing'" and "raise KeyError" in document["stackTrace"][0]
    assert log.startswith("[ERROR] KeyError: 'missing'\nTraceback (most recent call last):\n")

    status, body, _ = function_worker.invoke(function_worker.load_handler("sets.handler")[0], request, b"{}", settings)
    assert json.loads(body)["errorType"] == "Runtime.MarshalError"

    assert function_worker.load_handler("good.absent")[1]["errorType"] == "Runtime.HandlerNotFound"
    assert function_worker.load_handler("nodots")[1]["errorType"] == "Runtime.MalformedHandlerName"
    missing = function_worker.load_handler("nothere.handler")[1]
    assert missing == {"errorMessage": "Unable to import module 'nothere': No module named 'nothere'",
                       "errorType": "Runtime.ImportModuleError", "requestId": "", "stackTrace": []}


def test_function_identifiers():
    assert functions.parse_identifier("my-fn") == (None, None, "my-fn", None)
    assert functions.parse_identifier("123456789012:function:my-fn:$LATEST") == (None, "123456789012", "my-fn",
                                                                                 "$LATEST")
    assert functions.parse_identifier("arn:aws:lambda:eu-west-1:123456789012:function:my-fn") == (
        "eu-west-1", "123456789012", "my-fn", None)
    with pytest.raises(ValueError):
        functions.parse_identifier("not a name!")


def test_stored_log_events_make_their_group_and_stream(tmp_path):
    engine = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    log_events.put(engine, [("111111111111", "us-east-1", "/aws/lambda/f", "s1", [(1.0, "a"), (2.0, "b")]),
                            ("111111111111", "us-east-1", "/aws/lambda/f", "s2", [(3.0, "c")])])
    log_events.put(engine, [("111111111111", "us-east-1", "/aws/lambda/f", "s1", [(4.0, "d")])])
    groups = log_events.groups(engine, "111111111111", "us-east-1")
    assert list(groups) == ["/aws/lambda/f"]
    assert sorted(log_events.streams(engine, groups["/aws/lambda/f"][0]).values()) == ["s1", "s2"]
    assert log_events.groups(engine, "111111111111", "eu-west-1") == {}
    assert log_events.groups(engine, "222222222222", "us-east-1") == {}
    engine.dispose()


def test_a_pooled_process_is_forgotten_once_it_exits():
    supervisor = Supervisor()
    try:
        supervisor.add(ProcessSpec("pooled", (), restart=False, reserves={"memory_mb": 128},
                                   launch=lambda: subprocess.Popen([sys.executable, "-c", "pass"])))
        process = supervisor.ensure("pooled")
        process.wait()
        deadline = time.monotonic() + 5
        while "pooled" in supervisor.reserved():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        supervisor.add(ProcessSpec("pooled", (), restart=False,
                                   launch=lambda: subprocess.Popen([sys.executable, "-c", "pass"])))
    finally:
        supervisor.close(time.monotonic() + 2)
