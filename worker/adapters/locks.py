"""A fleet-wide mutual-exclusion lock in Redis: SET NX PX with a random token.

Only the holder's token can renew or release the lock (a compare-and-set in Lua), so a
holder that stalled past the TTL cannot extend or delete a lock that another process has
since taken. Long runs renew as they go; a crashed holder's lock expires on its own.
"""

from __future__ import annotations

import secrets

import redis

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LockLost(Exception):
    """The lock expired or passed to someone else while its holder was still working."""


class RedisLock:
    def __init__(self, client: redis.Redis, name: str, ttl_seconds: float,
                 prefix: str = "ipk") -> None:
        self._redis = client
        self.key = f"{prefix}:lock:{name}"
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        self._token: str | None = None
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @property
    def held(self) -> bool:
        return self._token is not None

    def acquire(self) -> bool:
        """True when this process now holds the lock; False when someone else does."""
        token = secrets.token_hex(16)
        if self._redis.set(self.key, token, nx=True, px=self.ttl_ms):
            self._token = token
            return True
        return False

    def renew(self) -> None:
        """Push the expiry a full TTL ahead; raises LockLost if the lock is no longer ours."""
        if self._token is None or not self._renew(keys=[self.key],
                                                  args=[self._token, self.ttl_ms]):
            self._token = None
            raise LockLost(self.key)

    def release(self) -> None:
        """Delete the lock if it is still ours (never someone else's)."""
        if self._token is not None:
            token, self._token = self._token, None
            self._release(keys=[self.key], args=[token])
