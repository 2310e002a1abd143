"""Bulk backfill against both sandboxes and a real Redis: both sources, invalid customers
mixed in, a whole-job rejection, an interrupted and resumed run."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.klaviyo_faults import Fault
from sandbox.local_stack import LocalStack
from sandbox.samples import customer
from tests.contract.openapi_contract import violations
from worker import bootstrap
from worker.adapters.dead_letters import DeadLetterStore
from worker.config import Settings
from worker.core.errors import FinalError
from worker.services.backfill import Backfill, BackfillOptions


@pytest.fixture
def stack(redis_url: str) -> Iterator[LocalStack]:
    with LocalStack(redis_url) as local:
        yield local
        assert violations(local.klaviyo.server.requests) == []


def container(stack: LocalStack) -> bootstrap.Container:
    return bootstrap.build(Settings.from_env(stack.env()))


def people(count: int, start: int = 5000) -> list[dict[str, Any]]:
    records = []
    for n in range(start, start + count):
        phone = f"201555{n % 10000:04d}" if n % 3 else None
        records.append(customer(n, f"First{n}", f"Last{n}", f"person{n}@example.com", phone))
    return records


def invalid_people() -> list[dict[str, Any]]:
    return [
        customer(9001, "No", "Contact", None, None),  # missing_identifier
        customer(9002, "Bad", "Phone", "bad.phone@example.com", "123"),  # invalid_phone
        customer(9003, None, "Nameless", "nameless@example.com", None),  # missing FirstName
    ]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "not json\n")
    return str(path)


def run(stack: LocalStack, options: BackfillOptions, write_backs: list[list[str]] | None = None
        ) -> Any:
    out = io.StringIO()
    backfill = Backfill(container(stack), container(stack).bulk, progress_stream=out,
                        sleep=lambda s: None,
                        enqueue_write_back=(write_backs.append if write_backs is not None
                                            else None))
    report = backfill.run(options)
    return report, out.getvalue()


def test_file_backfill_with_invalid_customers(stack: LocalStack, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "customers.jsonl", people(120) + invalid_people())
    write_backs: list[list[str]] = []
    report, output = run(stack, BackfillOptions(path=path, job_max_profiles=50), write_backs)
    assert report.counts == {"read": 124, "valid": 120, "sent": 120, "rejected": 4}
    assert len(stack.klaviyo.all_profiles()) == 120
    assert stack.klaviyo.call_counts["bulk_import_profiles"] == 3  # jobs of 50, 50, 20
    assert stack.klaviyo.call_counts["create_or_update_profile"] == 0
    dead = {e["id"]: e["reason"] for e in DeadLetterStore(stack.redis()).list()}
    assert dead == {"profile:9001": "missing_identifier", "profile:9002": "invalid_phone",
                    "profile:9003": "missing_required_field"}
    links = container(stack).links
    assert links.lookup("5000")[0] is not None and links.lookup("5000")[1] is False
    assert sorted(cid for chunk in write_backs for cid in chunk) == sorted(
        str(n) for n in range(5000, 5120))
    profile = stack.klaviyo.find_profiles(external_id="5001")[0]
    assert profile["attributes"]["location"]["zip"] == "10017"
    assert profile["id"] in stack.klaviyo.list_members("Sms Subscribers")
    assert profile["attributes"]["properties"]["Claustrophobic List"] is True
    assert "line 124: not a JSON object" in output
    assert "rejected 4" in report.summary


def test_api_backfill_pages_through_every_customer(stack: LocalStack) -> None:
    for record in people(250):
        stack.ipaas.put_customer(record)
    report, _ = run(stack, BackfillOptions(page_size=100))
    assert report.counts["read"] == 250 and report.counts["sent"] == 250
    assert stack.ipaas.call_counts["list_customers"] == 3
    assert len(stack.klaviyo.all_profiles()) == 250
    # 250 subscribe rows for the seed's static list, in jobs of at most 1,000.
    assert stack.klaviyo.call_counts["bulk_subscribe_profiles"] == 1


def test_whole_job_rejected_for_one_row_drops_that_row_and_resends(
    stack: LocalStack, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", people(10))
    stack.klaviyo.interceptors.append(Fault(
        "bulk_import_profiles", 400, times=1,
        pointer="/data/attributes/profiles/data/3/attributes/phone_number"))
    report, _ = run(stack, BackfillOptions(path=path))
    assert report.counts["sent"] == 9 and report.counts["rejected"] == 2  # row 3 + bad line
    assert stack.klaviyo.call_counts["bulk_import_profiles"] == 2
    entry = DeadLetterStore(stack.redis()).get("profile:5003")
    assert entry is not None and entry["reason"] == "klaviyo_rejected"
    assert entry["errors"][0]["field"] == "phone_number"
    assert stack.klaviyo.find_profiles(external_id="5003") == []


def test_interrupted_backfill_resumes_without_duplicates(
    stack: LocalStack, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", people(100))
    # The third job is refused outright: the run stops there.
    stack.klaviyo.interceptors.append(_fail_nth_import(3))
    with pytest.raises(FinalError):
        run(stack, BackfillOptions(path=path, job_max_profiles=20))
    assert len(stack.klaviyo.all_profiles()) == 40
    stack.klaviyo.interceptors.clear()
    before = stack.klaviyo.call_counts["bulk_import_profiles"]
    report, _ = run(stack, BackfillOptions(path=path, job_max_profiles=20))
    assert report.resumed_after == 40
    assert report.counts["read"] == 61  # the 60 left and the bad line
    assert stack.klaviyo.call_counts["bulk_import_profiles"] - before == 3
    profiles = stack.klaviyo.all_profiles()
    assert len(profiles) == 100
    assert len({p["attributes"]["external_id"] for p in profiles}) == 100
    # A finished run leaves no checkpoint: running again starts over, still no duplicates.
    again, _ = run(stack, BackfillOptions(path=path, job_max_profiles=50))
    assert again.resumed_after == 0 and len(stack.klaviyo.all_profiles()) == 100


def test_dry_run_counts_and_sends_nothing(stack: LocalStack, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", people(30) + invalid_people())
    report, _ = run(stack, BackfillOptions(path=path, dry_run=True))
    assert report.counts == {"read": 34, "valid": 30, "sent": 0, "rejected": 4}
    assert stack.klaviyo.server.requests == []
    assert DeadLetterStore(stack.redis()).count() == 0


def test_limit_stops_after_n_customers(stack: LocalStack, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", people(30))
    report, _ = run(stack, BackfillOptions(path=path, limit=12))
    assert report.counts["read"] == 12 and len(stack.klaviyo.all_profiles()) == 12


def _fail_nth_import(n: int) -> Any:
    seen = {"count": 0}

    def interceptor(request: Any, operation: str) -> Any:
        if operation != "bulk_import_profiles":
            return None
        seen["count"] += 1
        if seen["count"] == n:
            from sandbox.klaviyo_faults import error_response
            return error_response(403, pointer="/data")
        return None

    return interceptor


def test_per_row_import_errors_are_dead_lettered(stack: LocalStack, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", people(20))
    stack.klaviyo.bulk_row_error = (
        lambda attrs: "invalid" if attrs.get("external_id") == "5007" else None)
    report, _ = run(stack, BackfillOptions(path=path))
    assert report.counts["sent"] == 19
    entry = DeadLetterStore(stack.redis()).get("profile:5007")
    assert entry is not None and entry["reason"] == "klaviyo_rejected"
    assert container(stack).links.get("5007") is None
    assert container(stack).links.get("5006") is not None


def test_backfill_command_exit_codes(stack: LocalStack, tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps(r) + "\n" for r in people(5)))
    bad = write_jsonl(tmp_path / "bad.jsonl", people(5, start=6000) + invalid_people())
    command = [sys.executable, "-m", "producers.cli", "backfill"]
    dry = subprocess.run([*command, "--file", bad, "--dry-run"], env=stack.env(),
                         capture_output=True, text=True, timeout=120)
    assert dry.returncode == 1 and "dry run: nothing sent" in dry.stdout
    assert stack.klaviyo.all_profiles() == []
    done = subprocess.run([*command, "--file", str(good)], env=stack.env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "sent 5" in done.stdout and "backfill: read 5" in done.stderr
    assert len(stack.klaviyo.all_profiles()) == 5
    failed = subprocess.run([*command, "--file", bad], env=stack.env(),
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1
    assert "rejected 4" in failed.stdout  # three invalid customers and the bad line
    assert "3 customers rejected" in failed.stdout
