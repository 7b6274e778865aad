"""A request for what another server runs (``OwnedElsewhere``: an endpoint it serves, an agent session it
hosts), sent on to that server as it came: method, path, headers (the client's signature with them, which
the other server checks as its own) and body; its answer streams back as it arrives.

A forwarded request carries FORWARDED_HEADER and is never forwarded again, so two servers that disagree
about an owner cannot pass a request back and forth.
"""

from __future__ import annotations

import http.client
import ssl
from urllib.parse import urlsplit

from jobforge.core.blobs import BlockingBody
from jobforge.server.protocol.http import HttpRequest, HttpResponse

FORWARDED_HEADER = "x-jobforge-forwarded-by"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
              "content-length"}
TIMEOUT_SECONDS = 16 * 60.0  # longer than any invocation may run (an agent's: 15 minutes)
WHOLE_BODY = 1024 * 1024  # an answer of known length up to this size is read whole, else streamed
CHUNK = 65536


def forwarded(request: HttpRequest) -> bool:
    return FORWARDED_HEADER in request.headers


def forward(request: HttpRequest, url: str, server_id: str, ca_file: str | None) -> HttpResponse:
    """The other server's answer to the request; OSError when it cannot be reached."""
    target = urlsplit(url)
    if target.scheme == "https":
        connection = http.client.HTTPSConnection(target.hostname, target.port, timeout=TIMEOUT_SECONDS,
                                                 context=ssl.create_default_context(cafile=ca_file))
    else:
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=TIMEOUT_SECONDS)
    try:
        path = request.raw_path + (f"?{request.query_string}" if request.query_string else "")
        connection.putrequest(request.method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in request.headers.items():
            if name not in HOP_BY_HOP:
                connection.putheader(name, value.encode("utf-8", "surrogateescape"))
        connection.putheader(FORWARDED_HEADER, server_id)
        connection.putheader("Content-Length", str(len(request.body)))
        connection.endheaders(request.body or None)
        answer = connection.getresponse()
    except (OSError, http.client.HTTPException) as err:
        connection.close()
        raise OSError(f"the server at {url} did not answer: {err}") from None
    headers = [(name, value) for name, value in answer.getheaders() if name.lower() not in HOP_BY_HOP]
    if answer.length is not None and answer.length <= WHOLE_BODY:
        try:
            body = answer.read()
        finally:
            connection.close()
        return HttpResponse(answer.status, headers, body)

    def chunks():
        try:
            while chunk := answer.read1(CHUNK):
                yield chunk
        except (OSError, http.client.HTTPException):
            return  # the other server went away mid-answer: the answer ends there

    return HttpResponse(answer.status, headers, BlockingBody(chunks(), close=connection.close))
