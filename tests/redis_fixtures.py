"""Pytest plugin: one throwaway Redis server per test run, flushed before every test.

Tests never touch the machine's own Redis. If no server can be started the tests using it
fail rather than skip: a silently skipped store test hides a broken setup.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from sandbox.embedded_redis import EmbeddedRedis, start_redis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    try:
        server = start_redis()
    except Exception as exc:
        pytest.fail(f"could not start a throwaway redis-server: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        client.close()
