"""The tombstone store and the link store's reverse lookup, on a real Redis."""

from __future__ import annotations

import redis

from worker.adapters.links import LinkStore
from worker.adapters.tombstones import FORGET, WEBHOOK, Tombstones


def test_tombstones_answer_for_many_ids_at_once(redis_client: redis.Redis) -> None:
    tombstones = Tombstones(redis_client)
    assert tombstones.deleted(["1", "2", "3"]) == set()
    assert tombstones.add("2", WEBHOOK) is True
    tombstones.add_many(["3", "2"], FORGET)
    assert tombstones.deleted(["1", "2", "3", "4"]) == {"2", "3"}
    assert tombstones.deleted([]) == set()
    first = tombstones.get("2")
    assert first is not None and first.source == WEBHOOK  # the first record stays
    assert tombstones.add("2", FORGET) is False
    assert tombstones.is_deleted("3") and not tombstones.is_deleted("1")


def test_a_tombstone_keeps_the_profile_id_for_a_retried_deletion(
        redis_client: redis.Redis) -> None:
    tombstones = Tombstones(redis_client)
    tombstones.add("7", FORGET)
    tombstones.remember_profile("7", "01PROFILE7")
    found = tombstones.get("7")
    assert found is not None and found.profile_id == "01PROFILE7" and found.source == FORGET
    assert found.as_dict()["customer_id"] == "7"
    assert tombstones.remove("7") and tombstones.get("7") is None


def test_reverse_links_follow_the_forward_link(redis_client: redis.Redis) -> None:
    links = LinkStore(redis_client)
    links.set("C1", "P1")
    links.set_many({"C2": "P2", "C3": "P3"}, confirmed=False)
    assert links.customers_for(["P1", "P2", "P3", "P4"]) == {"P1": "C1", "P2": "C2",
                                                            "P3": "C3"}
    links.set("C1", "P9")  # relinked: the old profile no longer names the customer
    assert links.customers_for(["P1", "P9"]) == {"P9": "C1"}
    links.delete("C2")
    assert links.customers_for(["P2"]) == {}
    assert links.customers_for([]) == {}
