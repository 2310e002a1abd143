"""The system under test, for integration tests: a LocalStack (both sandboxes and a real
Celery worker process) on the run's throwaway Redis. Module-scoped because a worker takes a
few seconds to start; each module starts from an empty Redis and empty sandboxes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from producers.embedded_redis import EmbeddedRedis
from producers.local_stack import LocalStack
from tests.contract.openapi_contract import violations


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
