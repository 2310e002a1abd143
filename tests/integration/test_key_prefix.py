"""REDIS_KEY_PREFIX: a deployment writes every key under its prefix, Celery's queues and
results included, so two deployments can share one Redis."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import redis

from sandbox.samples import customer
from tests.integration.conftest import StackFactory
from worker.adapters import keys
from worker.adapters.links import LinkStore


def test_every_key_of_a_prefixed_deployment_is_under_its_prefix(
    make_stack: StackFactory, tmp_path: Path, redis_client: redis.Redis
) -> None:
    # Another deployment's data, under the default prefix, in the same Redis.
    LinkStore(redis_client, prefix=keys.DEFAULT_PREFIX).set("71001", "01OTHER")
    before = set(redis_client.keys("*"))

    stack = make_stack(REDIS_KEY_PREFIX="tenant-b:")
    stack.ipaas.put_customer(customer(71001, "Pre", "Fix", "prefix@example.com", "2015550181"))
    stack.start_worker(concurrency=1, log_path=str(tmp_path / "worker.log"))
    # The producer side in its own process too: this test process's Celery app was set up
    # under the default prefix.
    done = subprocess.run([sys.executable, "-m", "producers.cli", "sync", "71001", "--wait"],
                          env=stack.env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr

    ours = LinkStore(redis_client, prefix="tenant-b:").get("71001")
    assert ours is not None and ours != "01OTHER"
    assert LinkStore(redis_client, prefix=keys.DEFAULT_PREFIX).get("71001") == "01OTHER"
    written = set(redis_client.keys("*")) - before
    assert written, "the sync wrote nothing"
    assert {k for k in written if not k.startswith("tenant-b:")} == set()
    assert redis_client.exists("tenant-b:links", "tenant-b:history:71001") == 2
