"""The whole system on one machine: Redis, both sandboxes and worker processes.

The demo runs on it, and so do the integration tests (with their own throwaway Redis), so
what the tests prove is what the demo shows.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from sandbox.ipaas_sandbox import IpaasSandbox
from sandbox.klaviyo_sandbox import KlaviyoSandbox
from sandbox.samples import DOUBLE_OPT_IN_LIST, SEED_LIST, SampleCase
from worker.core.rate_limits import scaled_limits

WEBHOOK_KEY = "local-webhook-key"
KLAVIYO_KEY = "pk_sandbox_key"
IPAAS_TOKEN = "ipaas-sandbox-token"
SYSTEM_ID = "4242"


def kill_tree(pid: int) -> None:
    """SIGKILL a worker and its pool children at once, like a machine losing power."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    child_pids = [int(c) for c in children.read_text().split()] if children.exists() else []
    for target in [pid, *child_pids]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGKILL)


@dataclass
class LocalStack:
    redis_url: str
    klaviyo: KlaviyoSandbox = field(default_factory=lambda: KlaviyoSandbox(api_key=KLAVIYO_KEY))
    ipaas: IpaasSandbox = field(
        default_factory=lambda: IpaasSandbox(token=IPAAS_TOKEN, system_id=SYSTEM_ID)
    )
    extra_env: dict[str, str] = field(default_factory=dict)
    # The seed list's opt-in process in the Klaviyo sandbox (the account default stays
    # single opt-in): the demo shows the seed's own account, where it is double opt-in.
    seed_list_opt_in: str = "single_opt_in"
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log_path: str | None = None  # where the last started worker writes its log
    receiver_port: int | None = None
    _saved_env: dict[str, str] | None = None

    def start_sandboxes(self) -> LocalStack:
        self.klaviyo.start()
        self.ipaas.start()
        self.klaviyo.add_list(SEED_LIST, self.seed_list_opt_in)
        self.klaviyo.add_list(DOUBLE_OPT_IN_LIST, "double_opt_in")
        return self

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            REDIS_URL=self.redis_url,
            KLAVIYO_API_KEY=KLAVIYO_KEY,
            KLAVIYO_BASE_URL=self.klaviyo.url,
            IPAAS_API_TOKEN=IPAAS_TOKEN,
            IPAAS_BASE_URL=self.ipaas.url,
            IPAAS_SYSTEM_ID=SYSTEM_ID,
            WEBHOOK_API_KEY=WEBHOOK_KEY,
            # Short backoff so a demo or test run does not sit out production delays. The
            # documented defaults are covered by tests/integration/test_worker_killed.py and
            # `bench/faults.py --only kill`, which put them back.
            RETRY_BASE_SECONDS=env.get("RETRY_BASE_SECONDS", "0.2"),
            RETRY_CAP_SECONDS=env.get("RETRY_CAP_SECONDS", "2"),
            SYNC_MAX_ATTEMPTS=env.get("SYNC_MAX_ATTEMPTS", "4"),
            # The sandbox enforces no limits unless asked; the limiter is configured as for an
            # account with a hundred times the published limits, so volume tests are not
            # paced by Klaviyo's real quotas. Rate-limit tests set their own.
            KLAVIYO_RATE_LIMITS=env.get("KLAVIYO_RATE_LIMITS", scaled_limits(100)),
        )
        env.update(self.extra_env)
        return env

    def apply_env(self) -> None:
        """Point this process (the producer side) at the stack; `stop` restores the
        environment, so one stack's settings never leak into the next."""
        if self._saved_env is None:
            self._saved_env = dict(os.environ)
        os.environ.update(self.env())
        # Imported when used: the worker's modules read settings the stack sets first.
        from worker import bootstrap
        from worker.tasks.celery_app import use_redis

        use_redis(self.redis_url)
        bootstrap.reset()  # rebuild from the new environment on next use

    def start_worker(self, concurrency: int = 2, *, log_path: str | None = None,
                     name: str | None = None, exclude_queues: tuple[str, ...] = ()
                     ) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", "producers.cli", "worker", "--concurrency",
                str(concurrency), "--pool", "prefork", "--without-mingle", "--without-gossip",
                "--loglevel", "INFO"]
        if exclude_queues:
            args += ["--exclude-queues", ",".join(exclude_queues)]
        if name:
            args += ["--hostname", f"{name}@%h"]
        self.log_path = log_path
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        process = subprocess.Popen(args, env=self.env(), stdout=out, stderr=subprocess.STDOUT)
        self.workers.append(process)
        self._wait_for_worker(process)
        return process

    def _wait_for_worker(self, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
        # Imported when used: the worker's modules read settings the stack sets first.
        from worker.adapters.keys import DEFAULT_PREFIX
        from worker.tasks.celery_app import app

        # This process's Celery app knows only the default key prefix; a stack with another
        # is pinged from a process of its own, with the stack's settings.
        own_prefix = self.env().get("REDIS_KEY_PREFIX", DEFAULT_PREFIX) != DEFAULT_PREFIX
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"worker exited with code {process.returncode}")
            if own_prefix:
                ping = subprocess.run(
                    [sys.executable, "-m", "celery", "-A", "worker.tasks.celery_app", "inspect",
                     "ping", "--timeout", "1"], env=self.env(), capture_output=True)
                if ping.returncode == 0:
                    return
            elif app.control.ping(timeout=0.5):
                return
        raise RuntimeError("worker did not answer a ping within 60 s")

    def start_receiver(self, workers: int = 1, timeout: float = 30.0) -> subprocess.Popen[bytes]:
        """``ipaas-klaviyo serve`` on a free loopback port; returns once it is ready."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.receiver_port = int(probe.getsockname()[1])
        process = subprocess.Popen(
            [sys.executable, "-m", "producers.cli", "serve", "--host", "127.0.0.1",
             "--port", str(self.receiver_port), "--workers", str(workers)],
            env=self.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.workers.append(process)  # stopped with the workers
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"receiver exited with code {process.returncode}")
            try:
                if self.post("GET", "/readyz")[0] == 200:
                    return process
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("receiver did not become ready")

    def post(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        """One request to the receiver, with the stack's webhook key."""
        assert self.receiver_port is not None, "start_receiver() first"
        conn = http.client.HTTPConnection("127.0.0.1", self.receiver_port, timeout=10)
        try:
            headers = {"Authorization": f"Bearer {WEBHOOK_KEY}",
                       "Content-Type": "application/json"}
            conn.request(method, path, None if body is None else json.dumps(body), headers)
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        finally:
            conn.close()

    def wait_for_outcomes(self, customer_ids: list[str], timeout: float = 120.0
                          ) -> dict[str, dict[str, dict[str, Any]]]:
        """Each customer's final outcome per step, read from the sync history: the profile
        step, and when it succeeded, the address and lists steps it chained. Meant for
        customers synced for the first time: older history would count as an outcome."""
        # Imported when used: the worker's modules read settings the stack sets first.
        from worker.adapters.history import HistoryStore

        history = HistoryStore(self.redis())
        client = self.redis()
        deadline = time.monotonic() + timeout
        outcomes: dict[str, dict[str, dict[str, Any]]] = {}
        pending = list(customer_ids)
        while pending:
            # One round trip per pass for every pending customer: a poll must not compete
            # with the workers it is waiting for.
            pipe = client.pipeline(transaction=False)
            for cid in pending:
                pipe.lrange(history.key(cid), 0, 49)
            for cid, raw in zip(list(pending), pipe.execute(), strict=True):
                steps: dict[str, dict[str, Any]] = {}
                for entry in reversed([json.loads(item) for item in raw]):  # oldest first
                    if entry["outcome"] != "retrying":
                        steps[entry["step"]] = entry
                profile = steps.get("profile")
                if profile and (profile["outcome"] in ("rejected", "unchanged")
                                or {"address", "lists"} <= steps.keys()):
                    outcomes[cid] = steps
                    pending.remove(cid)
            if pending:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no outcome yet for customers {pending[:20]}")
                time.sleep(0.25)
        return outcomes

    def seed(self, cases: list[SampleCase]) -> None:
        for case in cases:
            if case.record is not None:
                self.ipaas.put_customer(case.record)
            if case.existing_profile:
                self.klaviyo.add_profile(**case.existing_profile)

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, decode_responses=True)

    def stop_workers(self, sig: int = signal.SIGTERM) -> None:
        for process in self.workers:
            if process.poll() is None:
                process.send_signal(sig)
        for process in self.workers:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.workers.clear()

    def stop(self) -> None:
        self.stop_workers()
        self.klaviyo.stop()
        self.ipaas.stop()
        if self._saved_env is not None:
            os.environ.clear()
            os.environ.update(self._saved_env)
            self._saved_env = None
            # Imported when used: the worker's modules read settings the stack sets first.
            from worker import bootstrap

            bootstrap.reset()

    def __enter__(self) -> LocalStack:
        return self.start_sandboxes()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
