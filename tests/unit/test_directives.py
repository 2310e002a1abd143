"""SubscribeProfile, LIST_ and UCLIST_ directives from raw mapped values."""

from __future__ import annotations

from typing import Any

import pytest

from worker.core import reasons
from worker.core.directives import parse_directives, parse_flag
from worker.core.model import Directives, ListDirective, MappedCustomer


def with_directives(**values: Any) -> MappedCustomer:
    return MappedCustomer(customer_id="1", collection="add", directives=dict(values))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        (" True ", True),
        (True, True),
        ("false", False),
        ("False", False),
        (" FALSE\n", False),
        (False, False),
        ("yes", None),
        ("1", None),
        (1, None),
        ("", None),
        (None, None),
        ("t", None),
    ],
)
def test_flags(raw: object, expected: bool | None) -> None:
    assert parse_flag(raw) is expected


def test_subscribe_and_lists() -> None:
    mapped = with_directives(
        **{
            "SubscribeProfile": "TRUE",
            "UCLIST_VIP": True,
            "LIST_Sms Subscribers": "true",
            "LIST_Archive": " false ",
        }
    )
    directives, errors = parse_directives(mapped)
    assert errors == []
    assert directives == Directives(
        subscribe_profile=True,
        lists=[
            ListDirective("Archive", consented=False, member=False),
            ListDirective("Sms Subscribers", consented=False, member=True),
            ListDirective("VIP", consented=True, member=True),
        ],
    )


def test_the_same_list_by_both_prefixes_keeps_a_stable_order() -> None:
    directives, _ = parse_directives(with_directives(UCLIST_A="true", LIST_A="false"))
    assert directives.lists == [
        ListDirective("A", consented=False, member=False),
        ListDirective("A", consented=True, member=True),
    ]


def test_unsubscribe() -> None:
    directives, errors = parse_directives(with_directives(SubscribeProfile=False))
    assert (directives.subscribe_profile, directives.lists, errors) == (False, [], [])


def test_nothing_said_means_nothing_done() -> None:
    directives, errors = parse_directives(with_directives())
    assert directives == Directives() and errors == []
    assert directives.subscribe_profile is None


def test_every_bad_flag_is_reported_by_destination_without_its_value() -> None:
    mapped = with_directives(SubscribeProfile="maybe", LIST_News="secret-yes", UCLIST_Ok="true")
    directives, errors = parse_directives(mapped)
    assert [(e.field, e.reason) for e in errors] == [
        ("LIST_News", reasons.INVALID_FLAG),
        ("SubscribeProfile", reasons.INVALID_FLAG),
    ]
    assert all(e.message == "expected true or false" for e in errors)
    assert directives.subscribe_profile is None
    assert directives.lists == [ListDirective("Ok", consented=True, member=True)]
