"""A tiny threaded HTTP server both sandboxes build on: routes, JSON in and out, and a
record of every request for tests (the contract test validates Klaviyo's against the spec).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Request:
    method: str
    path: str  # without the query string, still percent-encoded as sent
    raw_query: str  # exactly as sent on the wire
    query: dict[str, str]  # decoded
    headers: dict[str, str]  # lower-cased names
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # from the route pattern

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int
    body: Any = None  # dict/list → JSON; bytes/str → sent as is
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


Handler = Callable[[Request], Response]

# A handler returning this closes the connection without answering (a dropped connection).
DROP = Response(0)


class SandboxServer:
    """Routes ``(METHOD, '/path/{param}')`` to handlers on a loopback port of its own."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        self.record_requests = True
        self._host, self._port = host, port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$"
        self._routes.append((method.upper(), re.compile(regex), handler))

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://{host!s}:{port}"

    def start(self) -> SandboxServer:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, keep-alive clients wait
            # for a delayed ACK (~40 ms) on every response.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # quiet by design
                return

            def _serve(self) -> None:
                server._dispatch(self)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

        class _Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self._httpd = _Server((self._host, self._port), _Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------

    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        request = Request(
            method=h.command,
            path=parts.path,
            raw_query=parts.query,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in h.headers.items()},
            body=body,
        )
        if self.record_requests:
            with self._lock:
                self.requests.append(request)
        response = self._handle(request)
        if response is None or response.status == DROP.status:  # dropped on purpose
            h.close_connection = True
            return
        payload = self._encode(response)
        h.send_response(response.status)
        if payload:
            h.send_header("Content-Type", response.content_type)
        for name, value in response.headers.items():
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        if payload:
            h.wfile.write(payload)

    def _handle(self, request: Request) -> Response:
        path_matched = False
        for method, regex, handler in self._routes:
            match = regex.match(request.path)
            if not match:
                continue
            path_matched = True
            if method != request.method:
                continue
            request.params = match.groupdict()
            try:
                return handler(request)
            except Exception as exc:  # a sandbox bug must show up as a 500, not a hang
                return Response(500, {"errors": [{"status": 500, "code": "error",
                                                  "detail": f"sandbox error: {exc!r}"}]})
        status = 405 if path_matched else 404
        return Response(status, {"errors": [{"status": status, "code": "not_found",
                                             "title": "Not found", "detail": "no such route"}]})

    @staticmethod
    def _encode(response: Response) -> bytes:
        if response.body is None:
            return b""
        if isinstance(response.body, bytes):
            return response.body
        if isinstance(response.body, str):
            return response.body.encode()
        return json.dumps(response.body).encode()
