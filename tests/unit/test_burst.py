"""Burst mode's pure decisions: the switch's hysteresis, how many rows one job takes, and
which customer each import error belongs to."""

from __future__ import annotations

from worker.core import reasons
from worker.core.burst import (
    CONFLICT,
    IMPORTED,
    JOB_ENVELOPE_BYTES,
    REFUSED,
    BurstRow,
    RowError,
    next_mode,
    row_verdicts,
    rows_that_fit,
)
from worker.core.fingerprint import digest
from worker.services.burst_sync import PROFILE_ID_PLACEHOLDER, stamp_after_import


def row(cid: str, email: str | None = None, **extra: object) -> BurstRow:
    attributes = {"external_id": cid, "email": email or f"c{cid}@example.com"}
    defaults: dict[str, object] = dict(
        customer_id=cid, task_id=f"t{cid}", attributes=attributes, collection="add",
        linked_profile_id=None, link_source=None, fingerprint="f" + cid,
        next_material=None, location_applied=True)
    defaults.update(extra)
    return BurstRow(**defaults)  # type: ignore[arg-type]


# -- the switch ------------------------------------------------------------------------------


def test_switches_on_above_the_threshold_only() -> None:
    assert next_mode(False, 500, 500) is False
    assert next_mode(False, 501, 500) is True


def test_stays_on_until_the_backlog_is_below_half_the_threshold() -> None:
    assert next_mode(True, 400, 500) is True
    assert next_mode(True, 250, 500) is True
    assert next_mode(True, 249, 500) is False


def test_off_stays_off_between_half_and_the_threshold() -> None:
    assert next_mode(False, 300, 500) is False


def test_threshold_zero_turns_burst_mode_off_whatever_the_backlog() -> None:
    assert next_mode(False, 1_000_000, 0) is False
    assert next_mode(True, 1_000_000, 0) is False


# -- splitting -------------------------------------------------------------------------------


def test_a_job_takes_at_most_the_count_limit() -> None:
    assert rows_that_fit([10] * 25_000) == 10_000
    assert rows_that_fit([10] * 7, max_count=5) == 5


def test_a_job_stops_before_the_byte_limit() -> None:
    budget = 1_000 + JOB_ENVELOPE_BYTES
    # Each row costs its size plus a comma: 3 rows of 300 fit (903), the fourth would not.
    assert rows_that_fit([300] * 10, max_bytes=budget) == 3


def test_a_row_too_big_for_any_job_goes_alone() -> None:
    assert rows_that_fit([10_000, 5, 5], max_bytes=1_000 + JOB_ENVELOPE_BYTES) == 1


def test_nothing_waiting_takes_nothing() -> None:
    assert rows_that_fit([]) == 0


# -- import errors back to customers --------------------------------------------------------


def test_rows_without_errors_imported() -> None:
    verdicts = row_verdicts([row("1"), row("2")], [])
    assert {v.verdict for v in verdicts.values()} == {IMPORTED}


def test_a_data_refusal_names_the_field_and_rejects_only_its_row() -> None:
    rows = [row("1"), row("2"), row("3")]
    verdicts = row_verdicts(rows, [RowError(1, "phone_number", "invalid", external_id="2")])
    assert verdicts["2"].verdict == REFUSED
    assert [(e.field, e.reason) for e in verdicts["2"].errors] == [
        ("phone_number", reasons.KLAVIYO_REJECTED)]
    assert verdicts["1"].verdict == verdicts["3"].verdict == IMPORTED


def test_an_identifier_conflict_goes_back_to_single_writes() -> None:
    verdicts = row_verdicts([row("1"), row("2")],
                            [RowError(0, None, "duplicate_profile", external_id="1")])
    assert verdicts["1"].verdict == CONFLICT
    assert verdicts["2"].verdict == IMPORTED


def test_an_index_that_disagrees_with_the_echoed_payload_is_matched_by_payload() -> None:
    # Index 0 names customer 1, but the payload is customer 2's: blame customer 2 only.
    verdicts = row_verdicts([row("1"), row("2")],
                            [RowError(0, "email", "invalid", external_id="2")])
    assert verdicts["1"].verdict == IMPORTED
    assert verdicts["2"].verdict == REFUSED


def test_an_error_without_an_index_is_matched_by_email() -> None:
    verdicts = row_verdicts([row("1", "a@x.com"), row("2", "b@x.com")],
                            [RowError(None, None, "invalid", email="b@x.com")])
    assert verdicts["2"].verdict == REFUSED
    assert verdicts["2"].errors[0].field == "profile"


def test_an_error_naming_no_known_row_blames_nobody() -> None:
    verdicts = row_verdicts([row("1")], [RowError(7, None, "invalid", external_id="99")])
    assert verdicts["1"].verdict == IMPORTED


def test_a_refusal_wins_over_a_conflict_for_the_same_row() -> None:
    verdicts = row_verdicts([row("1")], [
        RowError(0, None, "duplicate_profile", external_id="1"),
        RowError(0, "email", "invalid", external_id="1")])
    assert verdicts["1"].verdict == REFUSED


# -- rows and fingerprints ------------------------------------------------------------------


def test_a_row_survives_its_json_round_trip() -> None:
    original = row("5", tracking_guid="g", queued_at=12.5)
    assert BurstRow.from_json(original.to_json()) == original


def test_a_linked_row_stores_its_own_fingerprint() -> None:
    linked = row("1", linked_profile_id="P1", link_source="link_store")
    assert stamp_after_import(linked, "P1") == linked.fingerprint


def test_a_new_profile_stores_the_fingerprint_the_next_sync_computes() -> None:
    material = {"attributes": {"email": "a@x.com"}, "collection": "update",
                "directives": {}, "profile_id": PROFILE_ID_PLACEHOLDER}
    new = row("1", next_material=material)
    expected = digest({**material, "profile_id": "P9"})
    assert stamp_after_import(new, "P9") == expected


def test_a_stale_link_stores_no_fingerprint() -> None:
    stale = row("1", linked_profile_id="OLD", link_source="link_store")
    assert stamp_after_import(stale, "NEW") is None


# -- queued messages drained into the buffer ------------------------------------------------


def test_a_queued_task_message_reads_back_its_name_id_and_arguments() -> None:
    from worker.adapters.broker import TaskMessages, task_call

    task_id, _, message = TaskMessages().build(
        "ipaas_klaviyo.sync_customer", {"customer_id": "7", "tracking_guid": "g"})
    assert task_call(message) == ("ipaas_klaviyo.sync_customer", task_id,
                                  {"customer_id": "7", "tracking_guid": "g"})


def test_anything_else_on_a_queue_is_not_taken_for_a_task() -> None:
    from worker.adapters.broker import task_call

    assert task_call("not json") is None
    assert task_call('{"headers": {}, "body": "e30="}') is None
