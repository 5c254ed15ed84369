"""The conformance echo app as a plain ASGI application, served by uvicorn
with its h11 protocol and the wsproto WebSocket implementation.

ASGI (as uvicorn 0.17 implements it) exposes no request trailers and cannot
send response trailers: the test knows, and /trailers sends its body
without the trailer.
Run: python3 -m uvicorn --app-dir DIR --http h11 --ws wsproto --host 127.0.0.1 --port PORT app:app
"""
import asyncio
import hashlib
import json

NAME = "uvicorn"
FIXED = b"0123456789abcdef" * 64


async def echo(scope, receive, send, delay=0.0):
    if delay:
        await asyncio.sleep(delay)
    h = hashlib.sha256()
    n = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return
        chunk = msg.get("body", b"")
        h.update(chunk)
        n += len(chunk)
        if not msg.get("more_body", False):
            break
    target = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
    if scope.get("query_string"):
        target += "?" + scope["query_string"].decode("latin-1")
    out = json.dumps({
        "server": NAME, "method": scope["method"], "target": target,
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        "body_len": n, "body_sha256": h.hexdigest(), "trailers": None,
    }).encode()
    await respond(send, 200, [(b"content-type", b"application/json"),
                              (b"content-length", str(len(out)).encode())], out)


async def respond(send, status, headers, body=b""):
    await send({"type": "http.response.start", "status": status,
                "headers": headers + [(b"x-backend", NAME.encode())]})
    await send({"type": "http.response.body", "body": body})


async def websocket(scope, receive, send):
    msg = await receive()
    if msg["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            return
        if msg.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": msg["bytes"]})
        else:
            await send({"type": "websocket.send", "text": msg.get("text", "")})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        return await websocket(scope, receive, send)
    path = scope["path"]
    if path == "/healthz":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
    elif path == "/echo":
        await echo(scope, receive, send)
    elif path == "/slow":
        await echo(scope, receive, send, 0.3)
    elif path == "/fixed":
        await respond(send, 200, [(b"content-type", b"text/plain"), (b"content-length", str(len(FIXED)).encode()),
                                  (b"set-cookie", b"a=1; Path=/"), (b"set-cookie", b"b=2; Path=/")], FIXED)
    elif path == "/empty":
        await respond(send, 204, [(b"x-empty", b"1")])
    elif path == "/notmod":
        if dict(scope["headers"]).get(b"if-none-match") == b'"v1"':
            await respond(send, 304, [(b"etag", b'"v1"')])
        else:
            await respond(send, 200, [(b"etag", b'"v1"'), (b"content-type", b"text/plain"),
                                      (b"content-length", b"6")], b"fresh\n")
    elif path == "/trailers":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"x-backend", NAME.encode())]})
        for i in range(3):
            await send({"type": "http.response.body", "body": b"chunk-%d\n" % i, "more_body": True})
            await asyncio.sleep(0.02)
        await send({"type": "http.response.body", "body": b""})
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
        for i in range(4):
            if i:
                await asyncio.sleep(0.25)
            await send({"type": "http.response.body", "body": b"data: event %d\n\n" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await respond(send, 404, [(b"content-type", b"text/plain")], b"not found\n")
