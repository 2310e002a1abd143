"""List name → Klaviyo list (id and opt-in process), resolved once and cached in Redis for
the whole fleet.

Klaviyo's list search is paged at 10 and creating lists is limited to 150 a day, so names
are never resolved per customer; the cache expires so a renamed or deleted list, or a
changed opt-in process, is noticed. The opt-in process is cached with the id because it
decides whether a list subscription gives consent at once (single opt-in) or only after the
person confirms (double opt-in).
"""

from __future__ import annotations

import json
from typing import Protocol

import redis

from worker.adapters import keys
from worker.core.model import ListRef


class _ListApi(Protocol):
    def find_lists(self, name: str) -> list: ...

    def create_list(self, name: str, opt_in_process: str | None = None): ...


class CachedListDirectory:
    def __init__(
        self,
        client: redis.Redis,
        klaviyo: _ListApi,
        *,
        create_missing: bool = False,
        prefix: str | None = None,
        ttl_seconds: int = 3600,
    ) -> None:
        self._redis = client
        self._klaviyo = klaviyo
        self._create_missing = create_missing
        self._key = keys.key(keys.LISTS, prefix)
        self._ttl = ttl_seconds

    def lookup(self, name: str) -> ListRef | None:
        cached = _decode(self._redis.hget(self._key, name))
        if cached is not None:
            return cached
        matches = self._klaviyo.find_lists(name)
        if matches:
            found = matches[0]
        elif self._create_missing:
            # No opt-in process given: the account's default applies, and the answer says it.
            found = self._klaviyo.create_list(name)
        else:
            return None
        ref = ListRef(str(found.id), found.opt_in_process)
        pipe = self._redis.pipeline()
        pipe.hset(self._key, name, json.dumps({"id": ref.id,
                                               "opt_in_process": ref.opt_in_process}))
        pipe.expire(self._key, self._ttl)
        pipe.execute()
        return ref

    def list_id(self, name: str) -> str | None:
        ref = self.lookup(name)
        return ref.id if ref is not None else None

    def forget(self) -> None:
        self._redis.delete(self._key)


def _decode(raw: object) -> ListRef | None:
    """The cached entry; None when absent or written before the opt-in process was cached
    (a bare id), so it is resolved again."""
    if isinstance(raw, bytes):
        raw = raw.decode()
    if not isinstance(raw, str) or not raw.startswith("{"):
        return None
    try:
        entry = json.loads(raw)
    except ValueError:
        return None
    list_id, opt_in = entry.get("id"), entry.get("opt_in_process")
    if not isinstance(list_id, str) or not list_id:
        return None
    return ListRef(list_id, opt_in if isinstance(opt_in, str) else None)
