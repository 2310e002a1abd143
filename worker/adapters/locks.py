"""A fleet-wide mutual-exclusion lock in Redis: redis-py's ``Lock`` (SET NX PX with a random
token), behind the small interface reconcile and the other single-runner jobs use.

Only the holder's token can renew or release the lock (redis-py checks it in Lua), so a
holder that stalled past the TTL cannot extend or delete a lock that another process has
since taken. Long runs renew as they go; a crashed holder's lock expires on its own.
"""

from __future__ import annotations

import contextlib

import redis
from redis.exceptions import LockError

from worker.adapters import keys


class LockLost(Exception):
    """Raised when the lock expired or passed to someone else while its holder still worked."""


class RedisLock:
    def __init__(self, client: redis.Redis, name: str, ttl_seconds: float,
                 prefix: str | None = None) -> None:
        self.key = keys.key(f"{keys.LOCKS}:{name}", prefix)
        # Not thread-local: the token belongs to this object, whichever thread renews it.
        self._lock = client.lock(self.key, timeout=max(0.001, ttl_seconds), blocking=False,
                                 thread_local=False)
        self._held = False

    @property
    def held(self) -> bool:
        return self._held

    def acquire(self) -> bool:
        """True when this process now holds the lock; False when someone else does."""
        self._held = bool(self._lock.acquire(blocking=False))
        return self._held

    def renew(self) -> None:
        """Push the expiry a full TTL ahead; raises LockLost if the lock is no longer ours."""
        try:
            if not self._held:
                raise LockError("not held")
            self._lock.reacquire()
        except LockError:
            self._held = False
            raise LockLost(self.key) from None

    def release(self) -> None:
        """Delete the lock if it is still ours (never someone else's)."""
        if self._held:
            self._held = False
            # Expired or taken over meanwhile: nothing of ours to delete.
            with contextlib.suppress(LockError):
                self._lock.release()
