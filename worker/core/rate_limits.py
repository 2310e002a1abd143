"""Klaviyo's rate-limit tiers and which tier each operation we call belongs to.

Klaviyo limits every account per endpoint with two fixed windows, a 1-second burst and a
60-second steady one; the spec names them per operation in ``x-klaviyo-ratelimit``. Our
limiter keys its buckets by (account, tier) rather than by endpoint, so operations of the
same tier share one budget: never more than Klaviyo allows, at worst a little less.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from worker.core.errors import ConfigurationError

# tier → (burst per second, steady per minute), from the 2026-07-15 revision.
TIERS: dict[str, tuple[int, int]] = {
    "XS": (1, 15),
    "S": (3, 60),
    "M": (10, 150),
    "L": (75, 750),
    "XL": (350, 3500),
}

# Used for an operation missing from OPERATION_TIERS. Not the smallest tier: XS would make
# a forgotten entry crawl at one call a second. M is below every profile and list
# operation we call, and the unit test fails when a client uses an operation not listed.
UNKNOWN_OPERATION_TIER = "M"

# operationId → tier, checked against the spec's x-klaviyo-ratelimit by a unit test.
OPERATION_TIERS: dict[str, str] = {
    # profiles
    "create_or_update_profile": "L",
    "create_profile": "L",
    "update_profile": "L",
    "get_profiles": "L",
    "get_profile": "L",
    "merge_profiles": "M",
    "get_list_ids_for_profile": "S",
    # lists
    "get_lists": "L",
    "get_list": "L",
    "create_list": "M",  # also 150 a day, which no window here tracks
    "update_list": "M",
    "delete_list": "M",
    "get_profiles_for_list": "L",
    "add_profiles_to_list": "M",
    "remove_profiles_from_list": "M",
    # consent
    "bulk_subscribe_profiles": "L",
    "bulk_unsubscribe_profiles": "L",
    "bulk_suppress_profiles": "L",
    "bulk_unsuppress_profiles": "L",
    # bulk profile import
    "bulk_import_profiles": "M",
    "get_bulk_import_profiles_job": "M",
    "get_bulk_import_profiles_jobs": "M",
    "get_errors_for_bulk_import_profiles_job": "M",
    "get_profiles_for_bulk_import_profiles_job": "M",
    "get_profile_ids_for_bulk_import_profiles_job": "M",
    "get_list_for_bulk_import_profiles_job": "M",
    "get_list_ids_for_bulk_import_profiles_job": "M",
    # events (planned)
    "create_event": "XL",
    "bulk_create_events": "M",
    # erasure: its own small tier (scope data-privacy:write)
    "request_profile_deletion": "S",
    # account key check: once per connection, never per task
    "get_accounts": "XS",
}

_ENTRY = re.compile(r"^(?P<tier>[A-Za-z]+)\s*=\s*(?P<burst>\d+)\s*/\s*(?P<steady>\d+)$")


def tier_for(operation: str) -> str:
    """The tier whose budget ``operation`` spends; ``UNKNOWN_OPERATION_TIER`` if unlisted."""
    return OPERATION_TIERS.get(operation, UNKNOWN_OPERATION_TIER)


def parse_limits(text: str) -> dict[str, tuple[int, int]]:
    """Parse ``KLAVIYO_RATE_LIMITS``, e.g. ``"L=75/750,M=10/150"`` (burst/steady per tier).

    Blank text means no overrides. Raises ConfigurationError naming the bad entry.
    """
    limits: dict[str, tuple[int, int]] = {}
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        match = _ENTRY.match(entry)
        if match is None:
            raise ConfigurationError(
                f"KLAVIYO_RATE_LIMITS: {entry!r} is not TIER=BURST/STEADY (e.g. L=75/750)"
            )
        tier = match["tier"].upper()
        burst, steady = int(match["burst"]), int(match["steady"])
        if tier not in TIERS:
            raise ConfigurationError(
                f"KLAVIYO_RATE_LIMITS: unknown tier {tier!r}; expected one of "
                + ", ".join(TIERS)
            )
        if tier in limits:
            raise ConfigurationError(f"KLAVIYO_RATE_LIMITS: tier {tier} given twice")
        if burst < 1 or steady < 1:
            raise ConfigurationError(f"KLAVIYO_RATE_LIMITS: {tier} limits must be at least 1")
        if burst > steady:
            # Almost certainly swapped: a minute always allows at least one second's burst.
            raise ConfigurationError(
                f"KLAVIYO_RATE_LIMITS: {tier} burst {burst}/s exceeds steady {steady}/min"
            )
        limits[tier] = (burst, steady)
    return limits


def effective_limits(
    overrides: Mapping[str, tuple[int, int]] | None = None,
) -> dict[str, tuple[int, int]]:
    """Klaviyo's published tiers with ``overrides`` (from ``parse_limits``) applied."""
    return {**TIERS, **(overrides or {})}


def scaled_limits(scale: float) -> str:
    """The published tiers multiplied by ``scale``, in ``KLAVIYO_RATE_LIMITS`` form (for an
    account with higher limits, and for sandboxes that enforce scaled limits)."""
    return ",".join(
        f"{tier}={max(1, int(burst * scale))}/{max(1, int(steady * scale))}"
        for tier, (burst, steady) in TIERS.items()
    )
