"""The Lambda Runtime API jobforge serves each container environment, driven over HTTP as a runtime drives it
(no container engine needed), and the gate that admits only the container's own address."""

from __future__ import annotations

import http.client
import json
import socket
import threading

import pytest

from jobforge.execution.container_gate import Gate, Relay
from jobforge.execution.lambda_runtime_api import MAX_RESPONSE, RuntimeApi, invocation_headers

PREFIX = "/2018-06-01/runtime"


@pytest.fixture
def api():
    gate = Gate()
    gate.open_to("127.0.0.1")
    served = RuntimeApi(gate)
    yield served
    served.close()


def call(api: RuntimeApi, method: str, path: str, body: bytes | None = None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    answer = response.status, dict(response.getheaders()), response.read()
    connection.close()
    return answer


def handed_over(api: RuntimeApi, request_id: str, event: bytes, timeout: float = 30):
    """Invoke in a thread; the thread's result holder."""
    result = {}
    headers = invocation_headers(request_id, 1_700_000_000_000, "arn:aws:lambda:us-east-1:1:function:f",
                                 {"custom": {"k": "v"}})
    thread = threading.Thread(target=lambda: result.setdefault("answer", api.invoke(
        request_id, event, headers, timeout)))
    thread.start()
    return thread, result


def test_an_invocation_goes_to_the_runtime_and_its_result_comes_back(api):
    thread, result = handed_over(api, "req-1", b'{"n": 1}')
    status, headers, body = call(api, "GET", f"{PREFIX}/invocation/next")
    assert status == 200 and body == b'{"n": 1}'
    assert headers["Lambda-Runtime-Aws-Request-Id"] == "req-1"
    assert headers["Lambda-Runtime-Deadline-Ms"] == "1700000000000"
    assert headers["Lambda-Runtime-Invoked-Function-Arn"] == "arn:aws:lambda:us-east-1:1:function:f"
    assert json.loads(headers["Lambda-Runtime-Client-Context"]) == {"custom": {"k": "v"}}
    assert headers["Lambda-Runtime-Trace-Id"].startswith("Root=1-")
    assert api.wait_init(1) == "ok"  # the first /next ended the init phase

    assert call(api, "POST", f"{PREFIX}/invocation/other/response", b"{}")[0] == 400
    status, _, body = call(api, "POST", f"{PREFIX}/invocation/req-1/response", b'{"answer": 2}')
    assert status == 202 and json.loads(body) == {"status": "OK"}
    thread.join()
    assert result["answer"].status == "ok" and result["answer"].body == b'{"answer": 2}'
    assert call(api, "POST", f"{PREFIX}/invocation/req-1/response", b"{}")[0] == 400  # answered once


def test_errors_init_errors_and_oversized_results(api):
    thread, result = handed_over(api, "req-2", b"{}")
    call(api, "GET", f"{PREFIX}/invocation/next")
    error = {"errorMessage": "no", "errorType": "ValueError", "stackTrace": []}
    assert call(api, "POST", f"{PREFIX}/invocation/req-2/error", json.dumps(error).encode(),
                {"Lambda-Runtime-Function-Error-Type": "ValueError"})[0] == 202
    thread.join()
    assert result["answer"].status == "error" and result["answer"].error_type == "ValueError"
    assert json.loads(result["answer"].body) == error

    thread, result = handed_over(api, "req-3", b"{}")
    call(api, "GET", f"{PREFIX}/invocation/next")
    status, _, body = call(api, "POST", f"{PREFIX}/invocation/req-3/response", b"x" * (MAX_RESPONSE + 1))
    assert status == 413 and json.loads(body)["errorType"] == "RequestEntityTooLarge"
    thread.join()
    too_large = json.loads(result["answer"].body)
    assert too_large["errorType"] == "Function.ResponseSizeTooLarge"
    assert too_large["errorMessage"].startswith(f"Response payload size ({MAX_RESPONSE + 1} bytes) exceeded")

    assert call(api, "GET", "/2020-01-01/extension/event/next")[0] == 404


def test_an_init_error_ends_the_init_phase():
    gate = Gate()
    gate.open_to("127.0.0.1")
    api = RuntimeApi(gate)
    try:
        error = {"errorMessage": "Unable to import module 'app'", "errorType": "Runtime.ImportModuleError"}
        assert call(api, "POST", f"{PREFIX}/init/error", json.dumps(error).encode(),
                    {"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"})[0] == 202
        answer = api.wait_init(5)
        assert answer.status == "error" and answer.error_type == "Runtime.ImportModuleError"
        assert json.loads(answer.body) == error
    finally:
        api.close()


def test_waiting_ends_when_the_environment_is_gone(api):
    thread, result = handed_over(api, "req-4", b"{}", timeout=60)
    api.stop_waiting()
    thread.join(10)
    assert not thread.is_alive() and result["answer"] is None


def test_only_the_containers_address_is_admitted():
    gate = Gate()
    gate.open_to("192.0.2.7")  # not this host's loopback: connections from 127.0.0.1 are someone else's
    api = RuntimeApi(gate)
    target = socket.create_server(("127.0.0.1", 0))
    relay = Relay(gate, target.getsockname())
    try:
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            call(api, "GET", f"{PREFIX}/invocation/next")
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
            assert sock.recv(1) == b""  # closed without being carried to the server
    finally:
        relay.close()
        api.close()
        target.close()


def test_the_relay_carries_the_containers_connections():
    gate = Gate()
    target = socket.create_server(("127.0.0.1", 0))
    relay = Relay(gate, target.getsockname())
    try:
        client = socket.create_connection(("127.0.0.1", relay.port), timeout=10)
        gate.open_to("127.0.0.1")  # told once the connection is waiting, as a container's first may be
        server_side, _ = target.accept()
        client.sendall(b"ping")
        assert server_side.recv(4) == b"ping"
        server_side.sendall(b"pong")
        assert client.recv(4) == b"pong"
        client.close()
        server_side.close()
    finally:
        relay.close()
        target.close()
