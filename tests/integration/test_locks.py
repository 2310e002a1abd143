"""The fleet-wide lock against a real Redis: one holder, renew and release only by it."""

from __future__ import annotations

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
    # Time passing is played by Redis itself (PEXPIRE, DEL), not by sleeps: no margin a busy
    # machine could break.
    lock = RedisLock(redis_client, "job", 30)
    assert lock.acquire()
    redis_client.pexpire("ipk:lock:job", 100)  # most of the TTL has gone by
    lock.renew()
    assert redis_client.pttl("ipk:lock:job") > 20_000  # a full TTL ahead again
    redis_client.delete("ipk:lock:job")  # the lock expired
    other = RedisLock(redis_client, "job", 30)
    assert other.acquire()  # taken by another process
    with pytest.raises(LockLost):
        lock.renew()
    assert not lock.held
    lock.release()
    assert redis_client.get("ipk:lock:job") is not None  # the new holder's lock survives
