"""HTTP/1.1 and HTTP/2 on one port: prior-knowledge h2c, the upgrade to h2c, HTTPS with ALPN (h2 and
http/1.1), and the same connection policing on HTTP/2; the JavaScript SDK's HTTP/2-only Bedrock runtime
client through node."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from h2client import Http2Client, signed
from jobforge import tinylm
from jobforge.server.http2 import PREFACE
from jobforge.testing_server import ServerProcess, free_port

JS_DIR = Path(__file__).resolve().parent.parent / "js"
MODEL = "meta.llama3-1-8b-instruct-v1:0"
IDENTITY = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
IDENTITY_BODY = b"Action=GetCallerIdentity&Version=2011-06-15"


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jobforge test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    srv = ServerProcess(folder / "data", tls=self_signed(folder)).start()
    yield srv
    srv.stop()


def _identity(client: Http2Client, server) -> int:
    return client.send(*signed(server.endpoint, "POST", "/", service="sts", credentials=server.credentials(),
                               body=IDENTITY_BODY, headers=IDENTITY))


def _account_of(response) -> str:
    assert response.status == 200, bytes(response.body)
    return bytes(response.body).split(b"<Account>")[1].split(b"</Account>")[0].decode()


def test_prior_knowledge_h2c_answers_signed_calls_side_by_side_on_one_connection(server, account_id):
    client = Http2Client(server.port)
    try:
        streams = [_identity(client, server) for _ in range(8)]  # all sent before any answer is read
        assert [_account_of(client.response(stream)) for stream in streams] == [account_id] * 8
        assert client.responses[streams[0]].headers["content-type"] == "text/xml"
    finally:
        client.close()


def test_an_http11_request_may_upgrade_to_h2c(server):
    client = Http2Client(server.port, upgrade_request=b"GET /_jobforge/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
    try:
        assert client.status_line == b"HTTP/1.1 101 Switching Protocols"
        answer = client.response(1)  # the upgraded request, answered over HTTP/2
        assert answer.status == 200 and json.loads(bytes(answer.body)) == {"status": "ok"}
        assert client.request([(":method", "GET"), (":path", "/_jobforge/health"), (":scheme", "http"),
                               (":authority", "localhost")]).status == 200  # and the connection goes on in HTTP/2
    finally:
        client.close()


def test_an_upgrade_asked_with_a_body_is_answered_over_http11_and_closed(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(b"POST /_jobforge/health HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                     b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nContent-Length: 2\r\n\r\n{}")
        received = _received_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 ") and b"connection: close" in received.lower()


def test_an_upgrade_with_malformed_settings_is_refused(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(b"GET /_jobforge/health HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                     b"Upgrade: h2c\r\nHTTP2-Settings: AAT_____\r\n\r\n")  # a window past 2^31-1
        assert _received_until_closed(sock).startswith(b"HTTP/1.1 400")


def test_s3_objects_stream_both_ways_over_http2_beyond_the_flow_control_windows(server):
    s3 = server.client("s3")
    s3.create_bucket(Bucket="h2-objects")
    body = os.urandom(5 * 1024 * 1024 + 123)  # beyond a stream's window either way, and the connection's first
    client = Http2Client(server.port)
    try:
        put = client.request(*signed(server.endpoint, "PUT", "/h2-objects/blob", service="s3",
                                     credentials=server.credentials(), body=body))
        assert put.status == 200, bytes(put.body)
        got = client.request(*signed(server.endpoint, "GET", "/h2-objects/blob", service="s3",
                                     credentials=server.credentials()))
        assert got.status == 200 and int(got.headers["content-length"]) == len(body)
        assert bytes(got.body) == body
    finally:
        client.close()
    assert s3.get_object(Bucket="h2-objects", Key="blob")["Body"].read() == body  # and over HTTP/1.1


def test_an_error_before_the_body_is_read_resets_the_rest_of_the_upload(server):
    stranger = {"aws_access_key_id": "AKIAUNKNOWNKEY000000", "aws_secret_access_key": "x" * 40}
    client = Http2Client(server.port)
    try:
        refused = client.request(*signed(server.endpoint, "PUT", "/h2-objects/refused", service="s3",
                                         credentials=stranger, body=os.urandom(4 * 1024 * 1024)))
        assert refused.status == 403 and b"<Code>InvalidAccessKeyId</Code>" in refused.body
        assert _account_of(client.response(_identity(client, server)))  # the connection is still served
    finally:
        client.close()


def test_https_serves_boto3_over_http11_and_alpn_h2(tls_server):
    assert tls_server.endpoint.startswith("https://")
    s3 = tls_server.client("s3")  # verify=the certificate: boto3 offers http/1.1 by ALPN
    s3.create_bucket(Bucket="tls-objects")
    s3.put_object(Bucket="tls-objects", Key="k", Body=b"over TLS")
    assert s3.get_object(Bucket="tls-objects", Key="k")["Body"].read() == b"over TLS"
    account = tls_server.client("sts").get_caller_identity()["Account"]
    client = Http2Client(tls_server.port, ca_file=tls_server.ca_file)
    try:
        assert client.alpn == "h2"
        assert _account_of(client.response(_identity(client, tls_server))) == account
        got = client.request(*signed(tls_server.endpoint, "GET", "/tls-objects/k", service="s3",
                                     credentials=tls_server.credentials()))
        assert got.status == 200 and bytes(got.body) == b"over TLS"
    finally:
        client.close()


def test_tls_options_are_refused_clearly_when_incomplete_or_unreadable(tmp_path):
    def serve(*tls_args):
        return subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(tmp_path / "data"), "serve",
                               "--port", str(free_port()), *tls_args], capture_output=True, text=True, timeout=60)

    alone = serve("--tls-cert", str(tmp_path / "cert.pem"))
    assert alone.returncode != 0 and "--tls-key" in alone.stderr
    (tmp_path / "cert.pem").write_text("not a certificate")
    (tmp_path / "key.pem").write_text("not a key")
    unreadable = serve("--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem"))
    assert unreadable.returncode != 0 and "cannot serve TLS" in unreadable.stderr


# -- policing ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def policed(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("policed-h2") / "data",
                        extra_args=["--header-timeout", "1", "--idle-timeout", "2",
                                    "--max-connections-per-client", "4"]).start()
    yield srv
    srv.stop()


def _closed_after(sock: socket.socket) -> float:
    """Seconds until the server closes sock, reading (and dropping) what it sends."""
    started = time.monotonic()
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def test_an_http2_connection_without_a_request_is_closed_after_the_header_timeout(policed):
    with socket.create_connection(("127.0.0.1", policed.port), timeout=15) as sock:
        sock.sendall(PREFACE)
        assert _closed_after(sock) < 8


def test_an_idle_http2_connection_is_closed_after_the_idle_timeout(policed):
    client = Http2Client(policed.port, timeout=15)
    assert client.request([(":method", "GET"), (":path", "/_jobforge/health"), (":scheme", "http"),
                           (":authority", "localhost")]).status == 200
    seconds = _closed_after(client.sock)
    assert 1 < seconds < 8, seconds


def test_http2_connections_count_against_the_per_client_cap(policed):
    held = [Http2Client(policed.port, timeout=15, source="127.0.0.3") for _ in range(4)]
    try:
        for client in held:  # a request whose body never comes keeps each connection busy, never idle
            client.conn.send_headers(client.conn.get_next_available_stream_id(), [
                (":method", "POST"), (":path", "/_jobforge/health"), (":scheme", "http"),
                (":authority", "localhost"), ("content-length", "10")])
            client._flush()
        time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", policed.port), timeout=15,
                                      source_address=("127.0.0.3", 0)) as sock:
            assert _received_until_closed(sock).startswith(b"HTTP/1.1 503")
        assert Http2Client(policed.port).request([(":method", "GET"), (":path", "/_jobforge/health"),
                                                  (":scheme", "http"), (":authority", "localhost")]).status == 200
    finally:
        for client in held:
            client.sock.close()


def _received_until_closed(sock: socket.socket) -> bytes:
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


# -- the JavaScript SDK ----------------------------------------------------------------------------------------


def _node_with_sdk() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    if not (JS_DIR / "node_modules" / "@aws-sdk" / "client-bedrock-runtime").is_dir():
        pytest.skip("the npm packages of tests/js are not installed (make test installs them)")
    return node


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    words = "red green blue north south east west river ocean forest city one two three".split()
    texts = [" ".join(words[(i * 5 + j) % len(words)] for j in range(6)) for i in range(100)]
    return tinylm.build(tmp_path_factory.mktemp("tiny-llama"), texts)


def _register(srv, model_dir: Path) -> None:
    subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(srv.data_dir), "models", "add", MODEL,
                    str(model_dir)], check=True, capture_output=True, timeout=120)


def _converse_through_node(node: str, srv) -> dict:
    env = dict(os.environ, JOBFORGE_ENDPOINT=srv.endpoint, MODEL_ID=MODEL, AWS_REGION="us-east-1",
               AWS_ACCESS_KEY_ID=srv.credentials()["aws_access_key_id"],
               AWS_SECRET_ACCESS_KEY=srv.credentials()["aws_secret_access_key"])
    if srv.ca_file:
        env["NODE_EXTRA_CA_CERTS"] = str(srv.ca_file)
    done = subprocess.run([node, str(JS_DIR / "bedrock_converse.mjs")], env=env, cwd=JS_DIR, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# The JavaScript SDK signs the host as ":authority" over HTTP/2, as AWS accepts.
@pytest.mark.parametrize("transport", ["h2c", "tls"])
def test_the_javascript_sdk_converses_over_http2(transport, server, tls_server, tiny_model):
    node = _node_with_sdk()
    srv = tls_server if transport == "tls" else server
    _register(srv, tiny_model)
    answer = _converse_through_node(node, srv)
    converse, stream = answer["converse"], answer["stream"]
    assert converse["httpStatusCode"] == 200 and converse["text"]
    assert converse["stopReason"] in ("max_tokens", "end_turn") and 0 < converse["outputTokens"] <= 8
    assert stream["httpStatusCode"] == 200
    assert stream["events"][0] == "messageStart" and stream["events"][-1] == "metadata"
    assert "contentBlockDelta" in stream["events"] and "messageStop" in stream["events"]
    assert stream["text"] == converse["text"]  # temperature 0: the same greedy generation
