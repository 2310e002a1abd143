"""The system under test, for integration tests: a LocalStack (both sandboxes and a real
Celery worker process) on the run's throwaway Redis. Module-scoped because a worker takes a
few seconds to start; each module starts from an empty Redis and empty sandboxes."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator

import pytest
import redis

from sandbox.embedded_redis import EmbeddedRedis
from sandbox.local_stack import LocalStack
from tests.contract.openapi_contract import violations
from worker.tasks.celery_app import app


@pytest.fixture(scope="module")
def stack(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[LocalStack]:
    redis.Redis.from_url(redis_server.url).flushall()
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with LocalStack(redis_server.url) as local:
        local.apply_env()
        local.start_worker(concurrency=2, log_path=str(log))
        yield local
        local.stop_workers()
        # Every request our Klaviyo client sent in this module must satisfy Klaviyo's spec.
        problems = violations(local.klaviyo.server.requests)
        assert problems == [], "requests that break Klaviyo's OpenAPI spec:\n" + "\n".join(
            problems[:20]
        )


StackFactory = Callable[..., LocalStack]


@pytest.fixture
def make_stack(redis_url: str) -> Iterator[StackFactory]:
    """A LocalStack per call, with extra settings (``make_stack(NAME="value")``), on the
    test's freshly flushed Redis; workers are killed and the environment restored after."""
    stacks: list[LocalStack] = []
    # A stack's environment lands in os.environ, and the next stack starts from it: put it
    # back so one test's settings (a zero window) do not leak into the next.
    saved = dict(os.environ)

    def build(**env: str) -> LocalStack:
        local = LocalStack(redis_url, extra_env=env).start_sandboxes()
        if app.conf.broker_url == redis_url:
            # Already pointed here: pointing again would close kombu's pool for this URL,
            # which kombu's pool registry then hands back closed.
            os.environ.update(local.env())
        else:
            local.apply_env()
        local.klaviyo.server.record_requests = False  # volume runs; the contract is elsewhere
        stacks.append(local)
        return local

    yield build
    for local in stacks:
        local.stop_workers(signal.SIGKILL)
        local.stop()
    os.environ.clear()
    os.environ.update(saved)
