"""Reading a body within the limit, and settling what an early answer left unread."""

from __future__ import annotations

import io
from typing import Any

import pytest

from producers.request_body import (
    CLOSE_CONNECTION,
    BodyTooLarge,
    InvalidLength,
    RequestBody,
    close_connection,
)

LIMIT = 100


def environ(data: bytes, length: str | None = None, chunked: bool = False) -> dict[str, Any]:
    env: dict[str, Any] = {"wsgi.input": io.BytesIO(data)}
    if length is not None:
        env["CONTENT_LENGTH"] = length
    if chunked:
        env["wsgi.input_terminated"] = True
    return env


def left_unread(env: dict[str, Any]) -> int:
    stream: io.BytesIO = env["wsgi.input"]
    return len(stream.getvalue()) - stream.tell()


def test_a_body_within_the_limit_is_read_whole() -> None:
    env = environ(b"x" * LIMIT, str(LIMIT))
    body = RequestBody(env, LIMIT)
    assert body.read() == b"x" * LIMIT
    assert body.settle() is True


def test_a_declared_length_over_the_limit_is_refused_unread() -> None:
    env = environ(b"x" * (LIMIT + 1), str(LIMIT + 1))
    with pytest.raises(BodyTooLarge):
        RequestBody(env, LIMIT).read()
    assert left_unread(env) == LIMIT + 1


@pytest.mark.parametrize("length", ["12a", "-1", "١٢", "1.0", " 1 2"])
def test_an_invalid_length_is_refused_and_closes_the_connection(length: str) -> None:
    body = RequestBody(environ(b"x", length), LIMIT)
    with pytest.raises(InvalidLength):
        body.read()
    assert body.settle() is False


@pytest.mark.parametrize("size", [1, LIMIT, LIMIT + 1, 2 * LIMIT])
def test_an_unread_body_up_to_twice_the_limit_is_read_away(size: int) -> None:
    env = environ(b"x" * size + b"NEXT REQUEST", str(size))
    assert RequestBody(env, LIMIT).settle() is True
    assert env["wsgi.input"].read() == b"NEXT REQUEST"


def test_a_longer_body_is_left_and_the_connection_closes() -> None:
    env = environ(b"x" * (2 * LIMIT + 1), str(2 * LIMIT + 1))
    assert RequestBody(env, LIMIT).settle() is False
    assert left_unread(env) == 2 * LIMIT + 1


def test_a_length_of_thousands_of_digits_is_too_large_not_a_crash() -> None:
    body = RequestBody(environ(b"{}", "9" * 5000), LIMIT)
    with pytest.raises(BodyTooLarge):
        body.read()
    assert body.settle() is False


def test_chunked_bodies_are_measured_as_read() -> None:
    within = RequestBody(environ(b"x" * LIMIT, chunked=True), LIMIT)
    assert within.read() == b"x" * LIMIT
    over = RequestBody(environ(b"x" * (2 * LIMIT), chunked=True), LIMIT)
    with pytest.raises(BodyTooLarge):
        over.read()
    assert over.settle() is True  # ended within twice the limit
    endless = RequestBody(environ(b"x" * (2 * LIMIT + 1), chunked=True), LIMIT)
    with pytest.raises(BodyTooLarge):
        endless.read()
    assert endless.settle() is False


def test_no_body_at_all() -> None:
    body = RequestBody({"wsgi.input": io.BytesIO(b"")}, LIMIT)
    assert body.read() == b""
    assert body.settle() is True


def test_close_connection_calls_the_servers_hook_when_there_is_one() -> None:
    calls: list[str] = []
    close_connection({CLOSE_CONNECTION: lambda: calls.append("closed")})
    close_connection({})
    assert calls == ["closed"]
