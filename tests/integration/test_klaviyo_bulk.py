"""The bulk profile import client against the Klaviyo sandbox on loopback.

Every request the client sends is checked against Klaviyo's OpenAPI spec at the end of each
test (the ``sandbox`` fixture).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sandbox.klaviyo_faults import Fault
from sandbox.klaviyo_sandbox import KlaviyoSandbox
from tests.contract.openapi_contract import violations
from worker.adapters.http import HttpAdapter
from worker.adapters.klaviyo.bulk import (
    ENVELOPE_HEADROOM,
    BulkRowsRejected,
    ImportJob,
    KlaviyoBulkImports,
    chunk_profiles,
    job_document,
)
from worker.adapters.klaviyo.client import KlaviyoClient
from worker.core.errors import KlaviyoRejected, RetryableError, ThrottledError

API_KEY = "pk_test_0123456789abcdef"
REVISION = "2026-07-15"


@pytest.fixture(scope="module")
def running_sandbox() -> Iterator[KlaviyoSandbox]:
    with KlaviyoSandbox(api_key=API_KEY, revision=REVISION) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(running_sandbox: KlaviyoSandbox) -> Iterator[KlaviyoSandbox]:
    running_sandbox.reset()
    running_sandbox.interceptors.clear()
    yield running_sandbox
    running_sandbox.interceptors.clear()
    problems = violations(running_sandbox.server.requests)
    assert problems == [], "requests that break Klaviyo's OpenAPI spec:\n" + "\n".join(
        problems[:20])


@pytest.fixture
def operations() -> list[str]:
    return []


@pytest.fixture
def bulk(sandbox: KlaviyoSandbox, operations: list[str]) -> Iterator[KlaviyoBulkImports]:
    with requests.Session() as session:
        client = KlaviyoClient(HttpAdapter(session, timeout=30), base_url=sandbox.url,
                               api_key=API_KEY, revision=REVISION,
                               before_request=operations.append)
        yield KlaviyoBulkImports(client)


def customers(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"external_id": f"C{n}", "email": f"c{n}@example.com", "first_name": "Ann",
             "last_name": None} for n in range(start, start + count)]


class FakeClock:
    def __init__(self) -> None:
        self.pauses: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)


# -- the job's life ------------------------------------------------------------------------


def test_start_wait_and_read_profiles(bulk: KlaviyoBulkImports, sandbox: KlaviyoSandbox,
                                      operations: list[str]) -> None:
    newsletter = sandbox.add_list("Newsletter")
    started = bulk.start_job(customers(3), list_ids=[newsletter])
    assert started == ImportJob(started.id, "queued", 3, 0, 0)
    clock = FakeClock()
    done = bulk.wait(started.id, poll_seconds=2, max_poll_seconds=3, sleep=clock.sleep)
    assert done == ImportJob(started.id, "complete", 3, 3, 0)
    assert clock.pauses == [2, 3]  # queued, processing, complete
    imported = dict((attrs["external_id"], pid) for pid, attrs in bulk.iter_profiles(done.id))
    assert set(imported) == {"C0", "C1", "C2"}
    for external_id, profile_id in imported.items():
        (stored,) = sandbox.find_profiles(external_id=external_id)
        assert stored["id"] == profile_id
    assert sandbox.list_members("Newsletter") == set(imported.values())
    assert list(bulk.iter_errors(done.id)) == []
    assert operations[0] == "bulk_import_profiles"
    body = json.loads(sandbox.server.requests[0].body)
    assert "last_name" not in body["data"]["attributes"]["profiles"]["data"][0]["attributes"]


def test_wait_times_out_with_a_retryable_error(bulk: KlaviyoBulkImports,
                                              sandbox: KlaviyoSandbox) -> None:
    sandbox.bulk_polls_until_complete = 50
    job = bulk.start_job(customers(1))
    clock = FakeClock()
    with pytest.raises(RetryableError, match="still processing") as caught:
        bulk.wait(job.id, poll_seconds=1, max_poll_seconds=4, timeout=10, sleep=clock.sleep)
    assert not isinstance(caught.value, ThrottledError)
    assert clock.pauses == [1, 2, 4]
    assert sum(clock.pauses) <= 10


def test_import_errors_carry_the_row_attributes(bulk: KlaviyoBulkImports,
                                                sandbox: KlaviyoSandbox) -> None:
    sandbox.add_profile(email="c1@example.com")
    sandbox.add_profile(external_id="C1")  # C1's identifiers now name two profiles
    sandbox.bulk_row_error = lambda a: "invalid" if a.get("external_id") == "C3" else None
    job = bulk.start_job(customers(5))
    done = bulk.wait(job.id, sleep=FakeClock().sleep)
    assert (done.completed_count, done.failed_count) == (3, 2)
    failures = sorted(bulk.iter_errors(job.id), key=lambda e: e.row_index or 0)
    assert [(e.row_index, e.code) for e in failures] == [(1, "duplicate_profile"),
                                                         (3, "invalid")]
    assert [e.original_payload and e.original_payload["external_id"] for e in failures] == [
        "C1", "C3"]
    imported = {attrs["external_id"] for _, attrs in bulk.iter_profiles(job.id)}
    assert imported == {"C0", "C2", "C4"}


def test_paging_reads_every_profile_and_error(bulk: KlaviyoBulkImports,
                                              sandbox: KlaviyoSandbox,
                                              operations: list[str]) -> None:
    sandbox.bulk_row_error = lambda a: "invalid" if a["external_id"].endswith("9") else None
    job = bulk.start_job(customers(1_234))
    bulk.wait(job.id, sleep=FakeClock().sleep)
    assert len(list(bulk.iter_profiles(job.id))) == 1_234 - 123
    assert len({e.original_payload["external_id"] for e in bulk.iter_errors(job.id)
                if e.original_payload}) == 123
    assert operations.count("get_profiles_for_bulk_import_profiles_job") == 12
    assert operations.count("get_errors_for_bulk_import_profiles_job") == 2


# -- refusals ------------------------------------------------------------------------------


def test_bad_rows_raise_bulk_rows_rejected_with_their_indexes(
        bulk: KlaviyoBulkImports, sandbox: KlaviyoSandbox) -> None:
    profiles = customers(5)
    profiles[1]["email"] = "bad-email"
    profiles[4]["phone_number"] = "555-0100"
    with pytest.raises(BulkRowsRejected) as caught:
        bulk.start_job(profiles)
    rows = caught.value.rows
    assert [(r.row_index, r.field, r.code) for r in rows] == [(1, "email", "invalid"),
                                                             (4, "phone_number", "invalid")]
    assert rows[0].original_payload is profiles[1]
    assert caught.value.status == 400
    assert "bad-email" not in str(caught.value) and "555" not in str(caught.value)
    assert sandbox.all_profiles() == []
    # Without the named rows the rest goes through.
    rest = [p for i, p in enumerate(profiles) if i not in {r.row_index for r in rows}]
    assert bulk.wait(bulk.start_job(rest).id, sleep=FakeClock().sleep).completed_count == 3


def test_request_level_refusals_are_klaviyo_rejected(bulk: KlaviyoBulkImports,
                                                     sandbox: KlaviyoSandbox) -> None:
    with pytest.raises(KlaviyoRejected) as unknown_list:
        bulk.start_job(customers(1), list_ids=["NoSuch"])
    assert not isinstance(unknown_list.value, BulkRowsRejected)
    with pytest.raises(KlaviyoRejected) as too_many:
        bulk.start_job(customers(10_001))
    assert not isinstance(too_many.value, BulkRowsRejected)
    with pytest.raises(KlaviyoRejected) as missing:
        bulk.get_job("01HNOSUCHJOB")
    assert missing.value.status == 404


def test_throttling_is_retryable(bulk: KlaviyoBulkImports, sandbox: KlaviyoSandbox) -> None:
    sandbox.interceptors.append(Fault("bulk_import_profiles", 429, retry_after=7))
    with pytest.raises(ThrottledError) as caught:
        bulk.start_job(customers(1))
    assert caught.value.retry_after == 7
    assert sandbox.all_profiles() == []


# -- chunking (pure) -----------------------------------------------------------------------


def test_chunk_profiles_by_count() -> None:
    chunks = list(chunk_profiles(customers(25), max_count=10))
    assert [len(c) for c in chunks] == [10, 10, 5]
    assert [p["external_id"] for c in chunks for p in c] == [f"C{n}" for n in range(25)]
    assert list(chunk_profiles([])) == []


def test_chunk_profiles_by_bytes_keeps_every_body_under_the_limit() -> None:
    profiles = [{"external_id": f"C{n}", "properties": {"note": "x" * (50 + n % 300)}}
                for n in range(2_000)]
    limit = ENVELOPE_HEADROOM + 60_000
    chunks = list(chunk_profiles(profiles, max_bytes=limit))
    assert len(chunks) > 5
    assert [p for c in chunks for p in c] == profiles
    lists = [f"L{n:05d}" for n in range(100)]
    for chunk in chunks:
        body = json.dumps(job_document(chunk, lists), separators=(",", ":")).encode()
        assert len(body) <= limit
    # Greedy: the next row would not have fit.
    first_size = len(json.dumps(job_document(chunks[0], []), separators=(",", ":")))
    assert first_size + 400 > limit - ENVELOPE_HEADROOM


def test_a_row_too_big_for_any_job_goes_alone() -> None:
    huge = {"external_id": "BIG", "properties": {"blob": "x" * 50_000}}
    chunks = list(chunk_profiles([*customers(2), huge, *customers(2, 2)],
                                 max_bytes=ENVELOPE_HEADROOM + 10_000))
    assert [[p["external_id"] for p in c] for c in chunks] == [
        ["C0", "C1"], ["BIG"], ["C2", "C3"]]


# -- scale ---------------------------------------------------------------------------------


def test_twenty_thousand_profiles_through_two_jobs(bulk: KlaviyoBulkImports,
                                                   sandbox: KlaviyoSandbox) -> None:
    sandbox.bulk_polls_until_complete = 0
    chunks = list(chunk_profiles(customers(20_000)))
    assert [len(c) for c in chunks] == [10_000, 10_000]
    links: dict[str, str] = {}
    for chunk in chunks:
        job = bulk.wait(bulk.start_job(chunk).id, sleep=FakeClock().sleep)
        assert (job.total_count, job.completed_count, job.failed_count) == (10_000, 10_000, 0)
        links.update((attrs["external_id"], pid) for pid, attrs in bulk.iter_profiles(job.id))
    assert len(links) == 20_000 and len(set(links.values())) == 20_000
    assert len(sandbox.all_profiles()) == 20_000
    (sample,) = sandbox.find_profiles(external_id="C12345")
    assert links["C12345"] == sample["id"]
