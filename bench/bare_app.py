"""The ceiling: an ASGI app that answers every request with a fixed body."""

BODY = b"<GetRoleResponse><GetRoleResult/></GetRoleResponse>"


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/xml"), (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})
