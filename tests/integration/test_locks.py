"""The fleet-wide lock against a real Redis: one holder, renew and release only by it."""

from __future__ import annotations

import time

import pytest
import redis

from worker.adapters.locks import LockLost, RedisLock


def test_one_holder_at_a_time(redis_client: redis.Redis) -> None:
    first, second = RedisLock(redis_client, "job", 30), RedisLock(redis_client, "job", 30)
    assert first.acquire()
    assert not second.acquire()
    second.release()  # not the holder: must not free the lock
    assert redis_client.exists("ipk:lock:job")
    first.release()
    assert second.acquire()


def test_renew_pushes_the_expiry_and_fails_once_lost(redis_client: redis.Redis) -> None:
    lock = RedisLock(redis_client, "job", 0.3)
    assert lock.acquire()
    time.sleep(0.2)
    lock.renew()
    time.sleep(0.2)
    assert redis_client.exists("ipk:lock:job")  # 0.4 s after acquire, renewed at 0.2 s
    time.sleep(0.3)
    other = RedisLock(redis_client, "job", 30)
    assert other.acquire()  # expired: taken by another process
    with pytest.raises(LockLost):
        lock.renew()
    lock.release()
    assert redis_client.get("ipk:lock:job") is not None  # the new holder's lock survives
