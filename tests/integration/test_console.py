"""The operator console over HTTP (Flask's test client), on a real Redis with a real Celery
worker and both sandboxes: sign-in, CSRF, every page, filters and paging, replay and purge,
sync now, preview, read-only mode, lock-out, and no 500 for bad input."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from producers.console import create_app
from producers.manual_sync import enqueue_customer, wait_for_steps
from sandbox.local_stack import LocalStack
from sandbox.samples import customer
from worker.adapters.dead_letters import DeadLetterStore
from worker.adapters.history import HistoryStore
from worker.config import Settings
from worker.core.errors import ConfigurationError

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"
BAD_PHONE = "555-01"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def person(customer_id: int, phone: str | None = "", first: str = "Ana") -> dict[str, Any]:
    phone = f"2015553{customer_id % 1000:03d}" if phone == "" else phone
    return customer(customer_id, first, f"Test{customer_id}", f"c{customer_id}@example.com",
                    phone)


def sync_and_wait(stack: LocalStack, *records: dict[str, Any]) -> dict[str, dict[str, Any]]:
    for record in records:
        stack.ipaas.put_customer(record)
    results = [(str(r["id"]), enqueue_customer(str(r["id"]))) for r in records]
    return {cid: {o["step"]: o for o in wait_for_steps(r, timeout=90)} for cid, r in results}


def console(stack: LocalStack, **env: str) -> Flask:
    settings = Settings.from_env({**stack.env(), "ADMIN_PASSWORD": PASSWORD, **env})
    return create_app(settings)


def csrf(page: str) -> str:
    found = _CSRF.search(page)
    assert found, "no CSRF token on the page"
    return found.group(1)


def signed_in(app: Flask, address: str = "10.0.0.1") -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    token = csrf(client.get("/login").get_data(as_text=True))
    answer = client.post("/login", data={"password": PASSWORD, "csrf_token": token})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return client


def page(client: FlaskClient, url: str, status: int = 200) -> str:
    answer = client.get(url)
    assert answer.status_code == status, (url, answer.status_code)
    return answer.get_data(as_text=True)


def post(client: FlaskClient, url: str, data: dict[str, Any], token_from: str = "/"
         ) -> Any:
    token = csrf(page(client, token_from))
    return client.post(url, data={**data, "csrf_token": token})


def store(stack: LocalStack) -> DeadLetterStore:
    return DeadLetterStore(stack.redis())


@pytest.fixture(autouse=True)
def empty_store(stack: LocalStack) -> None:
    dlq = store(stack)
    for entry in dlq.list():
        dlq.remove(entry["id"])


@pytest.fixture(scope="module")
def app(stack: LocalStack) -> Flask:
    return console(stack)


def test_refuses_to_start_without_a_password(stack: LocalStack) -> None:
    with pytest.raises(ConfigurationError, match="ADMIN_PASSWORD"):
        create_app(Settings.from_env(stack.env()))
    env = {k: v for k, v in stack.env().items() if not k.startswith("ADMIN_PASSWORD")}
    done = subprocess.run([sys.executable, "-m", "producers.cli", "admin", "--port", "0"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "ADMIN_PASSWORD" in done.stderr


def test_sign_in_cookie_and_sign_out(app: Flask, stack: LocalStack) -> None:
    client = app.test_client()
    assert client.get("/").status_code == 302  # to the login page
    token = csrf(page(client, "/login"))
    wrong = client.post("/login", data={"password": "nope", "csrf_token": token})
    assert wrong.status_code == 401
    right = client.post("/login", data={"password": PASSWORD, "csrf_token": token,
                                        "next": "/dead-letters"})
    assert right.status_code == 302 and right.headers["Location"].endswith("/dead-letters")
    cookie = right.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    assert "Queues and steps" in page(client, "/")
    post(client, "/logout", {})
    assert client.get("/").status_code == 302  # the session ended in Redis too

    secure = console(stack, ADMIN_SECURE_COOKIES="true").test_client()
    token = csrf(page(secure, "/login"))
    answer = secure.post("/login", data={"password": PASSWORD, "csrf_token": token})
    assert "Secure" in answer.headers["Set-Cookie"]


def test_open_redirect_is_refused(app: Flask) -> None:
    client = app.test_client()
    token = csrf(page(client, "/login"))
    answer = client.post("/login", data={"password": PASSWORD, "csrf_token": token,
                                         "next": "//evil.example/"})
    assert answer.headers["Location"] == "/"


def test_forms_without_the_csrf_token_are_refused(app: Flask, stack: LocalStack) -> None:
    store(stack).record(customer_id="7001", step="profile", reason="invalid_email", errors=[])
    anonymous = app.test_client()
    page(anonymous, "/login")
    assert anonymous.post("/login", data={"password": PASSWORD}).status_code == 400
    client = signed_in(app)
    for data in ({}, {"csrf_token": "forged"}):
        answer = client.post("/dead-letters/act", data={
            **data, "action": "purge", "scope": "selected", "ids": "profile:7001"})
        assert answer.status_code == 400
        assert client.post("/customer/7001/sync", data=data).status_code == 400
    assert store(stack).get("profile:7001") is not None


def test_lock_out_after_five_failed_sign_ins(app: Flask) -> None:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "192.0.2.77"
    token = csrf(page(client, "/login"))
    for _ in range(5):
        assert client.post("/login", data={"password": "guess", "csrf_token": token}
                           ).status_code == 401
    locked = client.post("/login", data={"password": PASSWORD, "csrf_token": token})
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.get_data(as_text=True)
    signed_in(app, address="192.0.2.78")  # another address is not locked out


def test_overview_shows_queues_dead_letters_chart_and_limiter(
        app: Flask, stack: LocalStack) -> None:
    outcomes = sync_and_wait(stack, person(7011), person(7012, BAD_PHONE))
    assert outcomes["7012"]["profile"]["outcome"] == "rejected"
    html = page(signed_in(app), "/")
    assert '<meta http-equiv="refresh" content="10">' in html
    for text in ("profiles", "transactions", "waiting to retry", "open steps",
                 "reason invalid_phone", "step profile", "Klaviyo limiter", "last minute / steady",
                 "customers watermark", "reachable"):
        assert text in html, text
    chart = html[html.index("<svg"):html.index("</svg>")]
    assert "<rect" in chart and "created" in chart  # this minute's syncs, by outcome


def test_dead_letter_table_filters_and_pages(app: Flask, stack: LocalStack) -> None:
    dlq = store(stack)
    for n in range(120):
        dlq.record(customer_id=str(8000 + n), step="address" if n % 2 else "profile",
                   reason="invalid_email" if n < 100 else "invalid_country", errors=[])
    client = signed_in(app)
    first = page(client, "/dead-letters")
    assert "120 in the store" in first and "page 1 of 3" in first
    assert first.count('name="ids"') == 50
    last = page(client, "/dead-letters?page=3")
    assert last.count('name="ids"') == 20
    country = page(client, "/dead-letters?reason=invalid_country")
    assert "20 matching" in country and "address:8119" in country
    assert "invalid_email" not in country.split("<table", 1)[1].split("</table>")[0]
    both = page(client, "/dead-letters?reason=invalid_email&step=address")
    assert "50 matching" in both
    assert "0 matching" in page(client, "/dead-letters?since=2999-01-01")
    assert "120 matching" in page(client, "/dead-letters?since=1h")


def test_bad_input_is_never_a_500(app: Flask) -> None:
    client = signed_in(app)
    for url, status in (("/dead-letters?reason=no_such_reason", 400),
                        ("/dead-letters?step=nope", 400),
                        ("/dead-letters?since=yesterday-ish", 400),
                        ("/dead-letters?page=99999999999999999999999999", 200),
                        ("/dead-letters?page=-4", 200), ("/dead-letters?page=x", 200),
                        ("/dead-letters/entry/profile:nobody", 404),
                        ("/dead-letters/entry/" + "x" * 5000, 404),
                        ("/customer?id=no%20such%20id", 400), ("/customer?id=" + "9" * 500, 400),
                        ("/customer?id=424242", 200), ("/customer?id=1&kind=transaction", 200),
                        ("/customer/%3Cscript%3E/preview", 400), ("/no/such/page", 404),
                        ("/customer/424242/preview", 200)):
        page(client, url, status)
    token = csrf(page(client, "/"))
    for data in ({"action": "explode", "scope": "selected"},
                 {"action": "purge", "scope": "selected"},
                 {"action": "purge", "scope": "matching", "since": "tomorrow"}):
        answer = client.post("/dead-letters/confirm", data={**data, "csrf_token": token})
        assert answer.status_code == 400, data


def test_detail_shows_errors_attempts_and_history(app: Flask, stack: LocalStack) -> None:
    sync_and_wait(stack, person(7021, BAD_PHONE))
    html = page(signed_in(app), "/dead-letters/entry/profile:7021")
    for text in ("invalid_phone", "phone", "first failure", "last failure", "attempts",
                 "profile</b> rejected"):
        assert text in html, text


def test_replay_selected_entry(app: Flask, stack: LocalStack, caplog: Any) -> None:
    sync_and_wait(stack, person(7031, BAD_PHONE), person(7032, BAD_PHONE))
    stack.ipaas.put_customer(person(7031))  # the data is fixed now
    client = signed_in(app)
    confirm = post(client, "/dead-letters/confirm",
                   {"action": "replay", "scope": "selected", "ids": "profile:7031"})
    text = confirm.get_data(as_text=True)
    assert "Replay 1 entry?" in text and "profile:7031" in text
    with caplog.at_level(logging.INFO, logger="ipaas_klaviyo.console"):
        done = client.post("/dead-letters/act", data={
            "action": "replay", "scope": "selected", "ids": "profile:7031",
            "csrf_token": csrf(text)})
    assert done.status_code == 302
    assert "1 replayed, 0 not replayed" in page(client, "/dead-letters")
    assert store(stack).get("profile:7031") is None
    assert store(stack).get("profile:7032") is not None
    assert any("action=replay" in r.message and "profile:7031" in r.message
               and "session=" in r.message for r in caplog.records)
    wait_for_history(stack, "7031", lambda h: h["outcome"] in ("created", "updated")
                     and (h.get("tracking_guid") or "").startswith("replay-"))


def test_replay_and_purge_everything_matching_the_filter(app: Flask, stack: LocalStack
                                                           ) -> None:
    sync_and_wait(stack, person(7041, BAD_PHONE), person(7042, BAD_PHONE))
    dlq = store(stack)
    for n in range(30):
        dlq.record(customer_id=str(9000 + n), step="address", reason="invalid_country",
                   errors=[])
    client = signed_in(app)
    confirm = post(client, "/dead-letters/confirm", {
        "action": "purge", "scope": "matching", "reason": "invalid_country"})
    text = confirm.get_data(as_text=True)
    assert "Purge 30 entries?" in text
    client.post("/dead-letters/act", data={"action": "purge", "scope": "matching",
                                           "reason": "invalid_country", "csrf_token": csrf(text)})
    assert "30 purged" in page(client, "/dead-letters")
    assert dlq.list(reason="invalid_country") == []
    assert len(dlq.list(reason="invalid_phone")) == 2

    for record in (person(7041), person(7042)):
        stack.ipaas.put_customer(record)
    confirm = post(client, "/dead-letters/confirm", {
        "action": "replay", "scope": "matching", "reason": "invalid_phone", "step": "profile"})
    text = confirm.get_data(as_text=True)
    assert "Replay 2 entries?" in text
    client.post("/dead-letters/act", data={"action": "replay", "scope": "matching",
                                           "reason": "invalid_phone", "step": "profile",
                                           "csrf_token": csrf(text)})
    assert "2 replayed" in page(client, "/dead-letters")
    for cid in ("7041", "7042"):
        wait_for_history(stack, cid, lambda h: h["outcome"] in ("created", "updated"))


def test_customer_page_sync_now_and_preview_with_a_difference(
        app: Flask, stack: LocalStack) -> None:
    outcomes = sync_and_wait(stack, person(7051))
    profile_id = outcomes["7051"]["profile"]["profile_id"]
    client = signed_in(app)
    html = page(client, "/customer?id=7051")
    assert f"https://www.klaviyo.com/profile/{profile_id}" in html
    assert "profile</b> created" in html

    before = len(HistoryStore(stack.redis()).recent("7051", limit=50))
    answer = post(client, "/customer/7051/sync", {})
    assert answer.status_code == 302
    assert "queued for a sync" in page(client, "/customer?id=7051")
    wait_for_history(stack, "7051", lambda h: True, more_than=before)

    stack.ipaas.put_customer(person(7051, first="Beatriz"))  # changed in iPaaS.com only
    html = page(client, "/customer/7051/preview")
    row = re.search(r'<tr class="differs"><td>first_name</td><td>([^<]*)</td><td>([^<]*)</td>',
                    html)
    assert row and row.groups() == ("Beatriz", "Ana"), html[:3000]
    assert '<tr class="same"><td>email</td>' in html
    assert stack.klaviyo.profile(profile_id)["attributes"]["first_name"] == "Ana"  # unsent


def test_read_only_mode_hides_and_refuses_actions(stack: LocalStack) -> None:
    store(stack).record(customer_id="7061", step="profile", reason="invalid_email", errors=[])
    client = signed_in(console(stack, ADMIN_READ_ONLY="true"))
    listing = page(client, "/dead-letters")
    assert "profile:7061" in listing and "read-only" in listing
    for control in ('name="ids"', "replay-selected", "purge-matching", "Replay all"):
        assert control not in listing
    assert "sync-now" not in page(client, "/customer?id=7061")
    assert 'id="preview"' in page(client, "/customer?id=7061")
    token = csrf(listing)
    for url, data in (("/dead-letters/confirm", {"action": "purge", "scope": "selected"}),
                      ("/dead-letters/act", {"action": "purge", "scope": "selected"}),
                      ("/customer/7061/sync", {})):
        answer = client.post(url, data={**data, "ids": "profile:7061", "csrf_token": token})
        assert answer.status_code == 403, url
    assert store(stack).get("profile:7061") is not None


def wait_for_history(stack: LocalStack, customer_id: str, match: Any, *, more_than: int = 0,
                     timeout: float = 90.0) -> None:
    history = HistoryStore(stack.redis())
    deadline = time.monotonic() + timeout
    while True:
        recent = history.recent(customer_id, limit=50)
        if len(recent) > more_than and any(match(h) for h in recent[:len(recent) - more_than]):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"no matching history for {customer_id}: {recent[:5]}")
        time.sleep(0.2)
