"""A webhook's request body: read within the limit, and settled after the answer so the
keep-alive connection can carry the next request.

An early answer (401, 404, 405, 413) leaves the body unread. Bytes left on the socket would
be read as the start of the next request, and gunicorn discards at most 64 KiB of them
before it drops the connection, after it has already told the client "keep-alive". So the
receiver settles every body itself: a body of at most twice the limit is read to its end and
thrown away; a longer one (or one of invalid length, or one that has not arrived within
DRAIN_SECONDS) makes the answer carry
``Connection: close`` and the server close the connection cleanly. Twice: a client that
overshoots the limit a little keeps its connection, and a client sending far more is not
read for nothing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any

# environ key: a callable that makes the server close the connection after this answer
# (set by producers.serve under gunicorn, which drops a Connection header set by the app).
CLOSE_CONNECTION = "ipaas_klaviyo.close_connection"

_READ_CHUNK = 64 * 1024
# How long an unread body may take to arrive before the connection is closed instead: a
# client that announces a body and stalls must not hold a worker thread (gunicorn bounds its
# own drain the same way, by 5 seconds).
DRAIN_SECONDS = 5.0
# Longer than any length the limit can allow, and short enough for int() to be trivial.
_MAX_LENGTH_DIGITS = 18


class BodyTooLarge(Exception):
    """The body is longer than the limit: answer 413."""


class InvalidLength(Exception):
    """Content-Length is not a whole number: answer 400."""


class RequestBody:
    def __init__(self, environ: Mapping[str, Any], limit: int) -> None:
        self._stream = environ.get("wsgi.input")
        # gunicorn's connection socket: its timeout bounds the drain (absent elsewhere).
        self._socket = environ.get("gunicorn.socket")
        self._limit = limit
        self._drain_limit = 2 * limit
        declared = str(environ.get("CONTENT_LENGTH") or "").strip()
        self._valid = not declared or (declared.isascii() and declared.isdigit())
        self._declared: int | None = None
        if declared and self._valid:
            too_long = len(declared) > _MAX_LENGTH_DIGITS
            self._declared = self._drain_limit + 1 if too_long else int(declared)
        # A chunked body: its length is known only once it has been read.
        self._unknown_length = not declared and bool(environ.get("wsgi.input_terminated"))
        self._settled = self._valid and not self._declared and not self._unknown_length
        self._consumed = 0

    def read(self) -> bytes:
        """The whole body. Raises InvalidLength, or BodyTooLarge without reading a body
        whose declared length is over the limit."""
        if not self._valid:
            raise InvalidLength
        if self._declared is not None:
            if self._declared > self._limit:
                raise BodyTooLarge
            data = self._read(self._declared)
            self._settled = True
            return data
        if self._unknown_length:
            # One byte past the limit proves the body too large.
            data = self._read(self._limit + 1)
            if len(data) > self._limit:
                raise BodyTooLarge
            self._settled = True
            return data
        return b""

    def settle(self) -> bool:
        """Read what is left of a body of at most twice the limit and discard it. False when
        the connection must close instead: the body is longer, or its length invalid."""
        if self._settled:
            return True
        self._settled = True
        if not self._valid:
            return False
        try:
            if self._declared is not None:
                if self._declared > self._drain_limit:
                    return False
                self._discard(self._declared - self._consumed)
                return True
            # Chunked: one byte past the drain limit proves the body longer.
            self._discard(self._drain_limit + 1 - self._consumed)
            return self._consumed <= self._drain_limit
        except Exception:  # a failed read leaves where the next request starts unknown
            return False

    def _read(self, length: int) -> bytes:
        chunks: list[bytes] = []
        self._pull(length, chunks.append)
        return b"".join(chunks)

    def _discard(self, length: int) -> int:
        """Read and drop up to ``length`` bytes within DRAIN_SECONDS; raises TimeoutError
        (settle then closes the connection) when the client is slower than that."""
        sock = self._socket if hasattr(self._socket, "settimeout") else None
        if sock is None:
            return self._pull(length, lambda chunk: None)
        prior = sock.gettimeout()
        deadline = time.monotonic() + DRAIN_SECONDS
        try:
            return self._pull(length, lambda chunk: None, deadline, sock)
        finally:
            with contextlib.suppress(OSError):  # the client has gone: nothing to restore
                sock.settimeout(prior)

    def _pull(self, length: int, keep: Callable[[bytes], None], deadline: float | None = None,
              sock: Any = None) -> int:
        """Read up to ``length`` bytes (fewer at the end of the body) into ``keep``."""
        pulled = 0
        while pulled < length and self._stream is not None:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("body drain took too long")
                sock.settimeout(remaining)
            chunk = self._stream.read(min(length - pulled, _READ_CHUNK))
            if not chunk:
                break
            keep(chunk)
            pulled += len(chunk)
        self._consumed += pulled
        return pulled


def close_connection(environ: Mapping[str, Any]) -> None:
    """Ask the server to close the connection after this answer (a no-op where it cannot)."""
    close: Callable[[], None] | None = environ.get(CLOSE_CONNECTION)
    if close is not None:
        close()
