"""The operator console's sign-in state in Redis: sessions and the failed-login lock-out.

Layout under ``{prefix}:admin``:
  ``session:{id}``        JSON {csrf, started_at}; expires SESSION_SECONDS after sign-in,
                          deleted at sign-out (the cookie only names the session)
  ``failed_logins:{who}`` failed sign-ins of one client address (hashed) inside the window
  ``signing_key``         the key Flask signs its cookie with, shared by every console process

Kept in Redis so a lock-out holds across console processes and restarts.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import cast

import redis

from worker.adapters import keys

SESSION_SECONDS = 12 * 3600
MAX_FAILED_LOGINS = 5
LOCKOUT_SECONDS = 15 * 60


def session_tag(session_id: str) -> str:
    """A short name for a session that is safe to log (the id itself signs you in)."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class AdminSession:
    session_id: str
    csrf_token: str

    @property
    def tag(self) -> str:
        return session_tag(self.session_id)


class AdminSessions:
    def __init__(self, client: redis.Redis, prefix: str | None = None,
                 ttl_seconds: int = SESSION_SECONDS) -> None:
        self._redis = client
        self._prefix = keys.key(keys.ADMIN, prefix)
        self.ttl_seconds = ttl_seconds

    def key(self, session_id: str) -> str:
        return f"{self._prefix}:session:{session_id}"

    def signing_key(self) -> str:
        """The cookie-signing key: made once, then shared by every console process."""
        key = f"{self._prefix}:signing_key"
        self._redis.set(key, secrets.token_hex(32), nx=True)
        return cast(str, self._redis.get(key))

    def start(self) -> AdminSession:
        session = AdminSession(secrets.token_urlsafe(32), secrets.token_urlsafe(32))
        self._redis.set(self.key(session.session_id),
                        json.dumps({"csrf": session.csrf_token, "started_at": time.time()}),
                        ex=self.ttl_seconds)
        return session

    def get(self, session_id: str) -> AdminSession | None:
        raw = cast(str | None, self._redis.get(self.key(session_id)))
        if raw is None:
            return None
        return AdminSession(session_id, str(json.loads(raw)["csrf"]))

    def end(self, session_id: str) -> None:
        self._redis.delete(self.key(session_id))


class LoginLockout:
    """``max_failures`` failed sign-ins from one address lock it out for ``lockout_seconds``
    from the last of them; a successful sign-in clears the count."""

    def __init__(self, client: redis.Redis, prefix: str | None = None, *,
                 max_failures: int = MAX_FAILED_LOGINS,
                 lockout_seconds: int = LOCKOUT_SECONDS) -> None:
        self._redis = client
        self._prefix = keys.key(f"{keys.ADMIN}:failed_logins", prefix)
        self.max_failures = max_failures
        self.lockout_seconds = lockout_seconds

    def key(self, client_address: str) -> str:
        # Hashed: an address is personal data, and key names show up in Redis tooling.
        digest = hashlib.sha256(client_address.encode()).hexdigest()[:16]
        return f"{self._prefix}:{digest}"

    def locked_for(self, client_address: str) -> int:
        """Seconds the address stays locked out; 0 when it may try to sign in."""
        key = self.key(client_address)
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(key)
        pipe.ttl(key)
        count, ttl = pipe.execute()
        if count is None or int(count) < self.max_failures:
            return 0
        return max(int(ttl), 1)

    def failed(self, client_address: str) -> int:
        """Count a failed sign-in; returns the failures in the window so far."""
        key = self.key(client_address)
        pipe = self._redis.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, self.lockout_seconds)
        count, _ = pipe.execute()
        return int(count)

    def succeeded(self, client_address: str) -> None:
        self._redis.delete(self.key(client_address))
