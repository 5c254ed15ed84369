"""The conformance echo app as a plain WSGI application, served by gunicorn
(gthread worker, so that connections are kept alive).

WSGI exposes neither request nor response trailers, nor WebSockets: the
test knows, and /trailers sends its body without the trailer.
Run: gunicorn --chdir DIR -k gthread --threads 8 -b 127.0.0.1:PORT app:app
"""
import hashlib
import json
import time

NAME = "gunicorn"
FIXED = b"0123456789abcdef" * 64


def headers_of(environ):
    # WSGI keeps no header names as sent: HTTP_X_FOO is X-Foo, and
    # CONTENT_LENGTH and CONTENT_TYPE come without the HTTP_ prefix.
    # Repeated headers arrive joined with commas.
    out = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            out.append([key[5:].replace("_", "-").title(), value])
        elif key in ("CONTENT_LENGTH", "CONTENT_TYPE") and value != "":
            out.append([key.replace("_", "-").title(), value])
    return out


def echo(environ, start_response, delay=0.0):
    if delay:
        time.sleep(delay)
    h = hashlib.sha256()
    n = 0
    body = environ["wsgi.input"]
    while True:
        chunk = body.read(65536)
        if not chunk:
            break
        h.update(chunk)
        n += len(chunk)
    target = environ.get("RAW_URI") or environ.get("PATH_INFO", "")
    out = json.dumps({
        "server": NAME, "method": environ["REQUEST_METHOD"], "target": target,
        "headers": headers_of(environ), "body_len": n, "body_sha256": h.hexdigest(),
        "trailers": None,
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(out))), ("X-Backend", NAME)])
    return [out]


def stream():
    for i in range(4):
        if i:
            time.sleep(0.25)
        yield ("data: event %d\n\n" % i).encode()


def trailers():
    for i in range(3):
        yield ("chunk-%d\n" % i).encode()
        time.sleep(0.02)


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/healthz":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]
    if path == "/echo":
        return echo(environ, start_response)
    if path == "/slow":
        return echo(environ, start_response, 0.3)
    if path == "/fixed":
        # The body goes out for HEAD too, as from any bare WSGI app: gunicorn
        # does not strip it, so a HEAD answer here is followed by 1024 bytes
        # on the wire that are no part of any answer. The gateway must keep
        # them from the client and from the next request on the connection.
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(FIXED))),
                                  ("X-Backend", NAME), ("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/")])
        return [FIXED]
    if path == "/empty":
        start_response("204 No Content", [("X-Backend", NAME), ("X-Empty", "1")])
        return [b""]
    if path == "/notmod":
        if environ.get("HTTP_IF_NONE_MATCH") == '"v1"':
            start_response("304 Not Modified", [("ETag", '"v1"'), ("X-Backend", NAME)])
            return [b""]
        start_response("200 OK", [("ETag", '"v1"'), ("Content-Type", "text/plain"),
                                  ("Content-Length", "6"), ("X-Backend", NAME)])
        return [b"fresh\n"]
    if path == "/trailers":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Backend", NAME)])
        return trailers()
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])
        return stream()
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("X-Backend", NAME)])
    return [b"not found\n"]
