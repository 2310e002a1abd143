"""The pure reconciliation rules, and the iPaaS.com client's update-time filter against the
sandbox (with the filter on, refused and ignored)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests

from sandbox.ipaas_sandbox import IpaasSandbox
from sandbox.samples import customer
from worker.adapters.http import HttpAdapter
from worker.adapters.ipaas import FilterNotAccepted, IpaasClient
from worker.core.reconcile import (
    CLOCK_SKEW_MARGIN,
    FILTERED,
    FULL_SCAN,
    SYNC,
    UNCHANGED,
    PassState,
    decide,
    decide_transaction,
    format_time,
    next_watermark,
    parse_time,
)

SINCE = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
BEFORE, AFTER = SINCE - timedelta(seconds=1), SINCE + timedelta(seconds=1)


def test_parse_and_format_time() -> None:
    assert parse_time("2026-11-01T12:00:00Z") == SINCE
    assert parse_time("2026-11-01T14:00:00+02:00") == SINCE
    assert parse_time("2026-11-01T12:00:00") == SINCE  # no offset: UTC
    assert parse_time("yesterday") is None and parse_time(None) is None
    assert format_time(SINCE) == "2026-11-01T12:00:00.000Z"


@pytest.mark.parametrize(("updated", "mode", "current", "stored", "expected"), [
    (AFTER, FILTERED, ("a",), "a", UNCHANGED),  # touched, payload identical
    (AFTER, FILTERED, ("b",), "a", SYNC),
    (BEFORE, FILTERED, ("b",), "a", UNCHANGED),  # a loose filter listed it
    (BEFORE, FULL_SCAN, ("b",), "a", SYNC),  # changed though the stamp did not move
    (BEFORE, FULL_SCAN, ("b", "a"), "a", UNCHANGED),  # matches its unlinked (Add) form
    (BEFORE, FULL_SCAN, ("b",), None, UNCHANGED),  # nothing to compare: the time decides
    (AFTER, FULL_SCAN, ("b",), None, SYNC),
    (AFTER, FULL_SCAN, (), "a", SYNC),  # invalid now: the time decides
    (BEFORE, FULL_SCAN, (), "a", UNCHANGED),
    (None, FILTERED, (), None, SYNC),  # no update time: cannot prove it old
])
def test_decide(updated: datetime | None, mode: str, current: tuple[str, ...],
                stored: str | None, expected: str) -> None:
    assert decide(updated, SINCE, mode=mode, current_fingerprints=current,
                  stored_fingerprint=stored) == expected


def test_decide_transaction() -> None:
    def verdict(updated: datetime, placed: bool, status_events: bool = False) -> str:
        return decide_transaction(updated, SINCE, mode=FULL_SCAN, placed_sent=placed,
                                  status_events=status_events)

    assert verdict(AFTER, placed=False) == SYNC
    assert verdict(BEFORE, placed=False) == UNCHANGED
    assert verdict(AFTER, placed=True) == UNCHANGED
    assert verdict(AFTER, placed=True, status_events=True) == SYNC
    assert verdict(BEFORE, placed=True, status_events=True) == UNCHANGED


def test_watermark_is_the_start_less_the_margin_and_never_goes_back() -> None:
    assert next_watermark(SINCE, None) == SINCE - CLOCK_SKEW_MARGIN
    later = SINCE + timedelta(hours=1)
    assert next_watermark(SINCE, later) == later


def test_pass_state_round_trip_and_bad_checkpoints() -> None:
    state = PassState("customers", SINCE, AFTER, FILTERED, 50, next_page=4)
    state.add("enqueued", 7)
    restored = PassState.from_dict(state.as_dict())
    assert restored == state
    assert PassState.from_dict({"kind": "customers", "mode": "sideways"}) is None
    assert PassState.from_dict({**state.as_dict(), "next_page": "x"}) is None


@pytest.fixture
def sandbox() -> Iterator[IpaasSandbox]:
    with IpaasSandbox() as server:
        for n in range(1, 8):
            record = customer(n, f"F{n}", f"L{n}", f"c{n}@example.com", None)
            record["updated_datetime"] = format_time(SINCE + timedelta(minutes=n - 4))
            server.put_customer(record)
        yield server


def listed(server: IpaasSandbox, **kwargs: object) -> list[int]:
    client = IpaasClient(HttpAdapter(requests.Session(), timeout=5), server.url, server.token,
                         server.system_id)
    return [r["id"] for _, page in client.iter_customers(2, **kwargs) for r in page]  # type: ignore[arg-type]


def test_update_time_filter(sandbox: IpaasSandbox) -> None:
    assert listed(sandbox, since=SINCE) == [5, 6, 7]
    assert listed(sandbox, since=SINCE, filter_action="greaterthanorequal") == [4, 5, 6, 7]
    query = sandbox.server.requests[-1].query
    assert query["action"] == "greaterthanorequal"
    assert query["UpdateDateTime"] == "2026-11-01T12:00:00.000Z"


def test_refused_and_ignored_filter(sandbox: IpaasSandbox) -> None:
    sandbox.update_filter_supported = False
    with pytest.raises(FilterNotAccepted):
        listed(sandbox, since=SINCE)
    assert listed(sandbox) == [1, 2, 3, 4, 5, 6, 7]  # no filter: unaffected
    sandbox.unsupported_filter_status = None
    assert listed(sandbox, since=SINCE) == [1, 2, 3, 4, 5, 6, 7]


@pytest.mark.integration  # starts a Python process
def test_beat_schedule_follows_the_interval_setting() -> None:
    import json
    import os
    import subprocess
    import sys

    probe = ("import celeryconfig, json; e = celeryconfig.beat_schedule['reconcile']; "
             "print(json.dumps([e['task'], e['schedule'], "
             "celeryconfig.task_routes[e['task']]['queue']]))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env={**os.environ, "RECONCILE_INTERVAL_SECONDS": "60"}, check=True)
    assert json.loads(done.stdout) == ["ipaas_klaviyo.reconcile", 60.0, "reconcile"]
