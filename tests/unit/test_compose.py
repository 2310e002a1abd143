"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

The structure is read from the YAML; every command a service or healthcheck runs is then run
here, as written (only the Redis URL, outside services and a port changed), against a
throwaway Redis and the sandboxes, and must start and answer its own healthcheck.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from producers.cli import build_parser
from sandbox.local_stack import LocalStack
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
_VARIABLE = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's ``${VAR:-default}`` / ``${VAR:?message}`` with an empty environment, as a
    user's fresh .env would leave the optional ones."""
    env = env or {}

    def one(m: re.Match[str]) -> str:
        name, kind, default = m.group(1), m.group(2), m.group(3) or ""
        if name in env:
            return env[name]
        return default if kind == "-" else ""

    return _VARIABLE.sub(one, value)


def command(service: str) -> list[str]:
    return [interpolate(str(part)) for part in SERVICES[service]["command"]]


def variables_named(text: str) -> set[str]:
    return {m.group(1) for m in _VARIABLE.finditer(text)}


# --- structure --------------------------------------------------------------------------------


def test_services() -> None:
    assert set(SERVICES) == {"redis", "receiver", "worker", "beat", "flower", "admin"}
    for name in ("receiver", "worker", "beat", "flower", "admin"):
        service = SERVICES[name]
        assert service["build"] == "."
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["restart"] == "unless-stopped"
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"


def test_redis_persists_and_never_evicts() -> None:
    redis = SERVICES["redis"]
    args = redis["command"]
    assert args[0] == "redis-server"
    options = dict(zip(args[1::2], args[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--maxmemory-policy"] == "noeviction"
    assert "redis-data:/data" in redis["volumes"]
    assert "redis-data" in COMPOSE["volumes"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_every_service_has_a_healthcheck() -> None:
    for name, service in SERVICES.items():
        check = service["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert check["interval"] and check["retries"] >= 3, name


def test_every_setting_the_service_reads_is_passed_to_the_workers() -> None:
    source = (ROOT / "worker" / "config.py").read_text()
    read = set(re.findall(r"e(?:\.get)?\(\s*(?:e,\s*)?\"([A-Z][A-Z0-9_]+)\"", source))
    read |= set(re.findall(r"_(?:flag|number|whole|positive)\(e,\s*\"([A-Z][A-Z0-9_]+)\"",
                           source))
    assert {"REDIS_URL", "KLAVIYO_API_KEY", "SENTRY_DSN"} <= read  # the pattern works
    receiver_only = {"WEBHOOK_API_KEY", "WEBHOOK_MAX_BODY_BYTES", "RECEIVER_WORKERS",
                     "METRICS_TOKEN"}
    assert receiver_only <= read
    passed = set(SERVICES["worker"]["environment"])
    console_only = {name for name in read if name.startswith("ADMIN_")}
    assert console_only >= {"ADMIN_PASSWORD", "ADMIN_PASSWORD_HASH", "ADMIN_READ_ONLY"}
    assert read - receiver_only - console_only <= passed, read - passed
    assert receiver_only <= set(SERVICES["receiver"]["environment"])
    assert console_only <= set(SERVICES["admin"]["environment"])
    assert not console_only & passed  # the workers never hold the console's password


def test_every_variable_is_documented() -> None:
    docs = (ROOT / "README.md").read_text()
    named = variables_named((ROOT / "docker-compose.yml").read_text())
    assert named, "no variables found"
    undocumented = sorted(v for v in named if f"`{v}`" not in docs)
    assert undocumented == []


def test_ipaas_klaviyo_commands_exist_in_the_cli() -> None:
    parser = build_parser()
    subcommands = dict(next(a for a in parser._actions if a.dest == "command").choices or {})
    named = [command(s) for s in SERVICES if SERVICES[s]["command"][0] == "ipaas-klaviyo"]
    assert {c[1] for c in named} == {"serve", "worker", "beat", "admin"}
    for argv in named:
        assert argv[1] in subcommands
        args, extra = parser.parse_known_args(argv[1:])
        assert args.command == argv[1]
        if args.command not in ("worker", "beat"):  # these pass extra arguments to Celery
            assert extra == []
    dockerfile_cmd = re.search(r'^CMD \[(.*)\]$', (ROOT / "Dockerfile").read_text(), re.M)
    assert dockerfile_cmd and '"ipaas-klaviyo", "worker"' in dockerfile_cmd.group(1)


def test_dockerfile_builds_the_package_as_a_non_root_user() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    instructions = [line.split(None, 1) for line in lines if line and not line.startswith("#")
                    and not line.startswith(("&&", "PYTHON", "PIP"))]
    keywords = [i[0] for i in instructions]
    assert keywords[0] == "FROM" and "python:3.11" in instructions[0][1]
    for keyword, rest in instructions:
        if keyword == "COPY":
            *sources, _ = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), source
    assert any(k == "RUN" and 'pip install ".[flower]"' in r for k, r in instructions)
    users = [r for k, r in instructions if k == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")


# --- every command starts ---------------------------------------------------------------------


def executable(argv: list[str]) -> list[str]:
    """The image's PATH commands are this virtualenv's."""
    if argv[0] in ("ipaas-klaviyo", "celery"):
        path = BIN / argv[0]
        assert path.exists(), f"{argv[0]} is not installed"
        return [str(path), *argv[1:]]
    if argv[0] == "python":
        return [sys.executable, *argv[1:]]
    return argv


def healthcheck(service: str, *, port: int | None = None, env: dict[str, str]) -> bool:
    test = SERVICES[service]["healthcheck"]["test"]
    kind, argv = test[0], [str(a) for a in test[1:]]
    if port is not None:  # the test's port instead of the container's
        argv = [a.replace(f":{SERVICES[service]['_container_port']}", f":{port}") for a in argv]
    if kind == "CMD-SHELL":
        line = argv[0].replace("$$", "$")
        for name in ("celery",):
            line = re.sub(rf"^{name}\b", str(BIN / name), line)
        result = subprocess.run(["sh", "-c", line], env=env, capture_output=True, timeout=60)
    else:
        result = subprocess.run(executable(argv), env=env, capture_output=True, timeout=60)
    return result.returncode == 0


SERVICES["receiver"]["_container_port"] = 8080
SERVICES["flower"]["_container_port"] = 5555
SERVICES["admin"]["_container_port"] = 8090


@pytest.fixture(scope="module")
def local(redis_server: Any) -> Iterator[LocalStack]:
    with LocalStack(redis_server.url) as stack:
        yield stack


def service_env(service: str, local: LocalStack) -> dict[str, str]:
    """The service's compose environment with the outside world swapped for the test's."""
    env = {k: interpolate(str(v)) for k, v in SERVICES[service]["environment"].items()}
    stack = local.env()
    for name in ("REDIS_URL", "KLAVIYO_API_KEY", "KLAVIYO_BASE_URL", "IPAAS_API_TOKEN",
                 "IPAAS_BASE_URL", "IPAAS_SYSTEM_ID", "WEBHOOK_API_KEY", "KLAVIYO_RATE_LIMITS"):
        if name in env:
            env[name] = stack[name]
    env.setdefault("FLOWER_BASIC_AUTH", "ops:secret")
    if "FLOWER_BASIC_AUTH" in env and not env["FLOWER_BASIC_AUTH"]:
        env["FLOWER_BASIC_AUTH"] = "ops:secret"
    env["SENTRY_DSN"] = ""
    env["HOSTNAME"] = socket.gethostname()
    return {"PATH": os.environ["PATH"], **env}


def run(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(executable(argv), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, cwd=ROOT)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_while_running(check: Any, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode()[-2000:] if process.stderr else ""
            raise AssertionError(f"exited with {process.returncode}: {err}")
        if check():
            return
        time.sleep(0.3)
    raise AssertionError("did not become healthy")


@pytest.mark.integration
def test_receiver_command_starts_and_passes_its_healthcheck(local: LocalStack) -> None:
    argv = command("receiver")
    port = free_port()
    argv[argv.index("--port") + 1] = str(port)
    argv[argv.index("--host") + 1] = "127.0.0.1"
    env = service_env("receiver", local)
    process = run([*argv, "--workers", "1"], env)
    try:
        wait_while_running(lambda: healthcheck("receiver", port=port, env=env), process)
    finally:
        stop(process)


@pytest.mark.integration
def test_worker_command_starts_and_passes_its_healthcheck(local: LocalStack) -> None:
    env = service_env("worker", local)
    argv = command("worker")
    assert argv[argv.index("--concurrency") + 1] == "4"
    process = run(argv, env)
    try:
        wait_while_running(lambda: healthcheck("worker", env=env), process, timeout=90)
    finally:
        stop(process)


@pytest.mark.integration
def test_beat_command_starts_and_passes_its_healthcheck(
    local: LocalStack, tmp_path: Path
) -> None:
    env = service_env("beat", local)
    schedule = str(tmp_path / "celerybeat-schedule")
    argv = [a.replace("/home/app/celerybeat-schedule", schedule) for a in command("beat")]
    assert argv[:2] == ["ipaas-klaviyo", "beat"]
    test = SERVICES["beat"]["healthcheck"]["test"]
    check = [a.replace("/home/app/celerybeat-schedule", schedule) for a in test[1:]]
    process = run(argv, env)
    try:
        wait_while_running(lambda: subprocess.run(executable(check), env=env,
                                          capture_output=True).returncode == 0, process)
    finally:
        stop(process)


@pytest.mark.integration
def test_flower_command_starts_and_passes_its_healthcheck(local: LocalStack) -> None:
    env = service_env("flower", local)
    port = free_port()
    argv = [a.replace("--port=5555", f"--port={port}") for a in command("flower")]
    assert argv[:4] == ["celery", "-A", "worker.tasks.celery_app", "flower"]
    process = run([*argv, "--address=127.0.0.1"], env)
    try:
        wait_while_running(lambda: healthcheck("flower", port=port, env=env), process)
    finally:
        stop(process)


def test_admin_port_is_published_on_the_loopback_only() -> None:
    assert SERVICES["admin"]["ports"] == ["127.0.0.1:${ADMIN_PORT:-8090}:8090"]
    args = build_parser().parse_args(["admin"])
    assert (args.host, args.port) == ("127.0.0.1", 8090)  # the command's own default


@pytest.mark.integration
def test_admin_command_starts_and_passes_its_healthcheck(local: LocalStack) -> None:
    env = service_env("admin", local)
    assert env["ADMIN_PASSWORD"] == ""  # compose leaves it to .env: the test sets one
    env["ADMIN_PASSWORD"] = "s3cret-for-the-test"
    argv = command("admin")
    port = free_port()
    argv[argv.index("--port") + 1] = str(port)
    argv[argv.index("--host") + 1] = "127.0.0.1"
    process = run(argv, env)
    try:
        wait_while_running(lambda: healthcheck("admin", port=port, env=env), process)
    finally:
        stop(process)
