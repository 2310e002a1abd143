"""Klaviyo's rate-limit tiers, the operation → tier table and the KLAVIYO_RATE_LIMITS parser."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from worker.core.errors import ConfigurationError
from worker.core.rate_limits import (
    OPERATION_TIERS,
    TIERS,
    UNKNOWN_OPERATION_TIER,
    effective_limits,
    parse_limits,
    tier_for,
)

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "tests" / "contract" / "openapi-stable.json"
KLAVIYO_CLIENTS = sorted((REPO / "worker" / "adapters").glob("**/*.py"))


def spec_rate_limits() -> dict[str, tuple[int, int]]:
    """operationId → (burst, steady) as the spec's x-klaviyo-ratelimit states them."""
    spec = json.loads(SPEC.read_text())
    limits: dict[str, tuple[int, int]] = {}
    for item in spec["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict) and "x-klaviyo-ratelimit" in operation:
                declared = operation["x-klaviyo-ratelimit"]
                burst = int(declared["burst"].removesuffix("/s"))
                steady = int(declared["steady"].removesuffix("/m"))
                limits[operation["operationId"]] = (burst, steady)
    return limits


def test_tiers_match_klaviyo_published_table() -> None:
    assert TIERS == {"XS": (1, 15), "S": (3, 60), "M": (10, 150), "L": (75, 750),
                     "XL": (350, 3500)}


def test_every_mapped_operation_gets_exactly_its_spec_limits() -> None:
    declared = spec_rate_limits()
    wrong = {op: (TIERS[tier], declared.get(op)) for op, tier in OPERATION_TIERS.items()
             if declared.get(op) != TIERS[tier]}
    assert wrong == {}


def test_every_operation_our_klaviyo_clients_call_is_mapped() -> None:
    # Any quoted spec operationId in the client sources is an operation they send.
    declared = spec_rate_limits()
    used: set[str] = set()
    for source in KLAVIYO_CLIENTS:
        for word in re.findall(r"\"([a-z_]+)\"", source.read_text()):
            if word in declared:
                used.add(word)
    assert {"create_or_update_profile", "add_profiles_to_list", "bulk_import_profiles"} <= used
    assert sorted(used - OPERATION_TIERS.keys()) == []


def test_planned_event_operations_are_mapped() -> None:
    assert tier_for("create_event") == "XL"
    assert tier_for("bulk_create_events") == "M"


def test_known_operations_resolve_to_their_tier() -> None:
    assert tier_for("create_or_update_profile") == "L"
    assert tier_for("add_profiles_to_list") == "M"
    assert tier_for("get_list_ids_for_profile") == "S"
    assert tier_for("get_accounts") == "XS"


def test_unknown_operation_falls_back_to_the_conservative_tier() -> None:
    assert UNKNOWN_OPERATION_TIER == "M"
    assert tier_for("no_such_operation") == "M"
    assert TIERS[tier_for("no_such_operation")] < TIERS["L"]


def test_parse_limits_reads_several_tiers() -> None:
    assert parse_limits("L=75/750,M=10/150") == {"L": (75, 750), "M": (10, 150)}


def test_parse_limits_tolerates_spaces_case_and_trailing_commas() -> None:
    assert parse_limits(" l = 50 / 500 , xs=1/10, ") == {"L": (50, 500), "XS": (1, 10)}


@pytest.mark.parametrize("text", ["", "   ", ","])
def test_parse_limits_blank_means_no_overrides(text: str) -> None:
    assert parse_limits(text) == {}


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("L=75", "TIER=BURST/STEADY"),
        ("L:75/750", "TIER=BURST/STEADY"),
        ("L=75/750/9", "TIER=BURST/STEADY"),
        ("L=-1/750", "TIER=BURST/STEADY"),
        ("L=7.5/750", "TIER=BURST/STEADY"),
        ("XXL=1/2", "unknown tier 'XXL'"),
        ("L=75/750,L=10/100", "given twice"),
        ("M=0/150", "at least 1"),
        ("M=10/0", "at least 1"),
        ("L=750/75", "exceeds steady"),
    ],
)
def test_parse_limits_rejects_bad_input_clearly(text: str, complaint: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_limits(text)
    assert "KLAVIYO_RATE_LIMITS" in str(caught.value)
    assert complaint in str(caught.value)


def test_effective_limits_overrides_only_the_named_tiers() -> None:
    limits = effective_limits({"L": (50, 500)})
    assert limits["L"] == (50, 500)
    assert limits["M"] == TIERS["M"]
    assert set(limits) == set(TIERS)
    assert TIERS["L"] == (75, 750)  # the published table itself is untouched


def test_effective_limits_without_overrides_is_the_published_table() -> None:
    assert effective_limits() == TIERS
    assert effective_limits(None) is not TIERS
