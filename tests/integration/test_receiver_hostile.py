"""Hostile webhook traffic against the real ``ipaas-klaviyo serve`` (gunicorn, gthread) with
its default settings (1 MiB body limit, keep-alive on), over reused keep-alive connections,
on a real throwaway Redis with no worker: what each request leaves in the queue is inspected
directly.

The fuzz test is seeded, so every run sends the same requests; it asserts outcomes, never
times. A connection is reopened only after an answer that said ``Connection: close``; a reset
or a silent close anywhere else counts as a dropped connection.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from producers.receiver import DEFAULT_MAX_BODY_BYTES, WEBHOOK_PATH
from sandbox.embedded_redis import EmbeddedRedis
from tests.support import free_port

pytestmark = pytest.mark.integration

KEY = "hostile-webhook-key"
LIMIT = DEFAULT_MAX_BODY_BYTES  # the served receiver runs with the default limit
SEED = 20261206
QUEUE = "profiles"
DROPPED = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
           ConnectionAbortedError)


@dataclass
class Served:
    port: int
    log: Path


@pytest.fixture(scope="module")
def served(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Served]:
    port = free_port()
    # The documented defaults: no setting of the receiver's is changed but the two it needs.
    env = {k: v for k, v in os.environ.items()
           if k not in ("WEBHOOK_MAX_BODY_BYTES", "GENERATE_EVENTS", "SENTRY_DSN")}
    env.update(REDIS_URL=redis_server.url, WEBHOOK_API_KEY=KEY)
    log = tmp_path_factory.mktemp("receiver") / "receiver.log"
    with open(log, "wb") as out:
        # Two workers, not 2 x cores + 1: the count changes nothing about how a request is
        # parsed or a connection kept, and this machine is shared.
        process = subprocess.Popen(
            [sys.executable, "-m", "producers.cli", "serve", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "2"],
            env=env, stdout=subprocess.DEVNULL, stderr=out,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
                conn.close()
            except OSError:
                pass
            assert time.monotonic() < deadline, "receiver did not become ready"
            time.sleep(0.1)
        yield Served(port, log)
    finally:
        process.terminate()
        process.wait(timeout=30)


# --- the client -------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: bytes
    closes: bool  # the answer said Connection: close


@dataclass
class Client:
    """One keep-alive connection at a time, reopened only when the server said it closes."""

    port: int
    conn: http.client.HTTPConnection | None = None
    dropped: list[str] = field(default_factory=list)
    reconnects: int = 0

    def send(self, label: str, method: str, path: str, body: bytes | Iterable[bytes] | None,
             headers: dict[str, str], declared_length: int | None = None) -> Answer | None:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            if declared_length is not None:  # a Content-Length the body does not live up to
                self.conn.putrequest(method, path)
                for name, value in {**headers, "Content-Length": str(declared_length)}.items():
                    self.conn.putheader(name, value)
                self.conn.endheaders(body if isinstance(body, bytes) else None)
            elif body is not None and not isinstance(body, bytes):
                self.conn.request(method, path, body, headers, encode_chunked=True)
            else:
                self.conn.request(method, path, body, headers)
            response = self.conn.getresponse()
            answer = Answer(response.status, response.read(),
                            (response.getheader("Connection") or "").lower() == "close")
        except DROPPED as exc:
            self.dropped.append(f"{label}: {type(exc).__name__}")
            self._reopen()
            return None
        if answer.closes:
            self._reopen()
        return answer

    def _reopen(self) -> None:
        assert self.conn is not None
        self.conn.close()
        self.conn = None
        self.reconnects += 1


# --- early answers and the connection --------------------------------------------------


def webhook_body(customer_id: str) -> bytes:
    return json.dumps({"scope": "customer/updated", "id": customer_id}).encode()


def json_headers(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


@pytest.mark.parametrize(("label", "body", "key", "status"), [
    # Well past gunicorn's own 64 KiB drain: before, the next request met a reset.
    ("just over the limit", b"[" + b" " * LIMIT + b"]", KEY, 413),
    ("chunked, over the limit", [b"[" + b" " * 65536] * 20 + [b"]"], KEY, 413),
    ("big body, wrong key", b"[" + b" " * (LIMIT - 2) + b"]", "wrong", 401),
])
def test_after_an_early_answer_the_connection_carries_the_next_request(
    served: Served, redis_client: redis.Redis, label: str, body: bytes | list[bytes],
    key: str, status: int,
) -> None:
    client = Client(served.port)
    first = client.send(label, "POST", WEBHOOK_PATH, body, json_headers(key))
    assert first is not None and (first.status, first.closes) == (status, False)
    second = client.send("next", "POST", WEBHOOK_PATH, webhook_body("after-early"),
                         json_headers())
    assert client.dropped == [] and client.reconnects == 0
    assert second is not None and second.status == 202
    assert queued_ids(redis_client) == ["after-early"]


def test_a_body_declared_far_past_the_limit_is_answered_at_once_and_closed_cleanly(
    served: Served,
) -> None:
    # 10 GB announced, a few bytes sent: reading it would hang, keeping the connection
    # would leave the rest to be taken for the next request.
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        sock.sendall(b"POST " + WEBHOOK_PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer " + KEY.encode() + b"\r\n"
                     b"Content-Length: 10000000000\r\n\r\n{}")
        received = b""
        while chunk := sock.recv(65536):  # ends at the server's FIN; a reset would raise
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert b"\r\nConnection: close" in head
    assert json.loads(body) == {"error": f"body larger than {LIMIT} bytes"}


def test_a_client_that_stalls_in_an_unread_body_is_answered_and_closed(served: Served) -> None:
    # Announces a webhook-sized body with a wrong key and sends ten bytes of it. The receiver
    # waits for the rest at most DRAIN_SECONDS (5 s) rather than holding a thread for as long
    # as the client likes, then answers and closes.
    with socket.create_connection(("127.0.0.1", served.port), timeout=60) as sock:
        sock.sendall(b"POST " + WEBHOOK_PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer wrong\r\nContent-Length: 500000\r\n\r\n"
                     b"0123456789")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401")
    assert b"\r\nConnection: close" in head
    assert json.loads(body) == {"error": "missing or invalid bearer token"}


# --- the generated requests -------------------------------------------------------------


@dataclass
class Case:
    kind: str
    body: bytes | list[bytes] | None
    method: str = "POST"
    path: str = WEBHOOK_PATH
    headers: dict[str, str] = field(default_factory=dict)
    declared_length: int | None = None
    queues: set[str] = field(default_factory=set)  # ids a correct receiver queues
    accepted: int = 0  # its valid notifications (a repeated id counts each time)
    expect: str = "4xx"  # "202", "4xx", or "400 with accepted"


GOOD_AUTH = {"Authorization": f"Bearer {KEY}"}
CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", "text/plain",
                 "application/xml", "multipart/form-data; boundary=x", ""]
# Ids a correct receiver accepts, odd ones included: they are strings without control or
# unpaired surrogate characters, at most 64 characters.
ODD_VALID_IDS = ["ü-7", "客户-9", "\U0001f600-3", "a b", "x" * 64, "0", "-1", "‮rtl"]
# Ids it must reject, each for one of the id rules.
INVALID_IDS: list[Any] = [
    "", "   ", True, False, [1], {"a": 1}, 1.5, "x" * 65, "\ud800", "\udfff", "a\udc00b",
    "\ud83d", "a\x00b", "\x1f", "tab\there", "\x7f", "nl\nx", "\u0085x", "line\u2028sep",
    10**70, -(10**70),
]
# Raw JSON numbers (text) that must never be converted, or that are no id.
HOSTILE_NUMBERS = ["9" * 5000, "-" + "9" * 4301, "1" * 70, "1e400", "-1e999", "1e308",
                   "1" + "0" * 400 + ".5", "NaN", "Infinity", "-Infinity", "0.5", "-2.25"]


class Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.serial = 0

    def valid_id(self) -> str:
        self.serial += 1
        pick = self.rng.random()
        if pick < 0.1:
            return self.rng.choice(ODD_VALID_IDS)
        if pick < 0.3:
            return str(self.rng.randrange(1, 10**9))  # sent as a JSON number below
        return f"fz-{self.rng.randrange(400)}"

    def note(self, record_id: Any, **extra: Any) -> dict[str, Any]:
        scope = self.rng.choice(["customer/updated", "Customer/Created", "customer/updated/debug"])
        key = self.rng.choice(["id", "Id", "external_id"])
        return {"scope": scope, key: record_id, **extra}

    def valid_note(self) -> tuple[dict[str, Any], str]:
        record_id = self.valid_id()
        sent: Any = int(record_id) if record_id.isdigit() and self.rng.random() < 0.7 \
            else record_id
        return self.note(sent, tracking_guid=f"g-{self.serial}"), record_id

    def headers(self, content_type: str | None = None) -> dict[str, str]:
        chosen = self.rng.choice(CONTENT_TYPES) if content_type is None else content_type
        return {**GOOD_AUTH, **({"Content-Type": chosen} if chosen else {})}

    def shape(self, notes: list[dict[str, Any]]) -> bytes:
        """An envelope, a bare list, or (one note) a bare object."""
        pick = self.rng.random()
        if len(notes) == 1 and pick < 0.3:
            payload: Any = notes[0]
        elif pick < 0.6:
            payload = notes
        else:
            payload = {"id": f"env-{self.serial}", "attempt": 0, "notifications": notes}
        return json.dumps(payload).encode()

    # Each kind returns one Case.

    def valid(self) -> Case:
        pairs = [self.valid_note() for _ in range(self.rng.randint(1, 5))]
        return Case("valid", self.shape([n for n, _ in pairs]), headers=self.headers(),
                    queues={i for _, i in pairs}, accepted=len(pairs), expect="202")

    def invalid_ids(self) -> Case:
        """Bad ids mixed with good ones: the bad are rejected, the good still queued."""
        good = [self.valid_note() for _ in range(self.rng.randint(0, 3))]
        bad = [self.note(self.rng.choice(INVALID_IDS)) for _ in range(self.rng.randint(1, 4))]
        notes = [n for n, _ in good] + bad
        self.rng.shuffle(notes)
        return Case("invalid ids", self.shape(notes), headers=self.headers(),
                    queues={i for _, i in good}, accepted=len(good), expect="400 with accepted")

    def hostile_number(self) -> Case:
        number = self.rng.choice(HOSTILE_NUMBERS)
        good, good_id = self.valid_note()
        where = self.rng.random()
        if where < 0.6:  # as the id
            raw = ('{"notifications": [' + json.dumps(good)
                   + ', {"scope": "customer/updated", "id": ' + number + "}]}")
            return Case("huge or odd numbers", raw.encode(), headers=self.headers(),
                        queues={good_id}, accepted=1, expect="400 with accepted")
        raw = '{"attempt": ' + number + ', "notifications": [' + json.dumps(good) + "]}"
        return Case("huge or odd numbers", raw.encode(), headers=self.headers(),
                    queues={good_id}, accepted=1, expect="202")

    def deep(self) -> Case:
        depth = self.rng.choice([33, 50, 200, 1000, 5000, 100_000, LIMIT - 2])
        style = self.rng.random()
        if style < 0.4:
            raw = b"[" * depth + b"]" * depth if depth < LIMIT // 2 else b"[" * depth
        elif style < 0.7:
            raw = b'{"a":' * depth + b"1" + b"}" * depth if depth * 6 < LIMIT else \
                b'{"a":' * (LIMIT // 6)
        else:
            inner = b"[" * depth + b"]" * depth if depth < LIMIT // 3 else b"[" * (LIMIT // 3)
            raw = b'{"notifications": [{"scope": "customer/updated", "id": "1", "x": ' + \
                inner + b"}]}"
        return Case("deep nesting", raw, headers=self.headers())

    def large_envelope(self) -> Case:
        """Close to the limit: thousands of notifications, mostly with bad ids."""
        good = [self.valid_note() for _ in range(3)]
        bad_id = self.rng.choice(["\ud800", "x" * 65, "a\x00b", "", 1.5])
        notes: list[dict[str, Any]] = [n for n, _ in good]
        filler = json.dumps({"scope": "customer/updated", "id": bad_id})
        count = (LIMIT - 200) // (len(filler) + 2)
        notes += [json.loads(filler)] * count
        raw = json.dumps({"notifications": notes}).encode()
        while len(raw) > LIMIT:
            notes.pop()
            raw = json.dumps({"notifications": notes}).encode()
        return Case("large envelopes", raw, headers=self.headers(),
                    queues={i for _, i in good}, accepted=len(good), expect="400 with accepted")

    def over_limit(self) -> Case:
        pick = self.rng.random()
        if pick < 0.5:  # a real body just over the limit: read away, the connection kept
            raw = b'{"notifications": [' + b" " * (LIMIT + self.rng.randint(0, 50_000)) + b"]}"
            return Case("over-limit bodies", raw, headers=self.headers())
        if pick < 0.75:  # chunked, length unknown until read
            size = LIMIT + self.rng.randint(1, 200_000)
            chunk = self.rng.choice([4096, 65536, 300_000])
            raw = b"[" + b" " * size + b"]"
            return Case("over-limit bodies", [raw[i:i + chunk] for i in range(0, len(raw), chunk)],
                        headers=self.headers())
        # A declared length far past the limit and only a few bytes: answered at once.
        return Case("over-limit bodies", b'{"notifications": []}', headers=self.headers(),
                    declared_length=self.rng.choice([LIMIT * 3, 10**9, 10**15]))

    def random_bytes(self) -> Case:
        size = self.rng.choice([1, 7, 100, 4000, 70_000, LIMIT])
        return Case("random bytes", self.rng.randbytes(size), headers=self.headers())

    def broken_json(self) -> Case:
        note, _ = self.valid_note()
        text = json.dumps({"notifications": [note, note]})
        pick = self.rng.random()
        if pick < 0.4:
            raw = text[: self.rng.randrange(1, len(text))]
        elif pick < 0.8:
            at = self.rng.randrange(len(text))
            raw = text[:at] + self.rng.choice(['"', "{", "]", ",", "\\", "\\u12", ":"]) + \
                text[at + 1:]
        else:
            raw = self.rng.choice(["{'id': 1}", "[1,]", '{"a" 1}', "nul", "\ufeff\ufeff{}",
                                   '"unterminated', "[" + '"\\"' * 1000])
        # Any mutation that still parses goes through the receiver's normal rules; only a
        # body that does not parse is counted here.
        try:
            json.loads(raw)
        except ValueError:
            return Case("broken JSON", raw.encode("utf-8", "surrogatepass"),
                        headers=self.headers())
        return self.broken_json()

    def wrong_types(self) -> Case:
        payload = self.rng.choice([
            "customer/updated", 42, None, True, 1.5, {},
            {"notifications": "1001"}, {"notifications": 5}, {"notifications": None},
            {"notifications": {"scope": "customer/updated", "id": "1"}},
            [1, "two", None, [], True],
            {"notifications": [{"scope": 5, "id": "1"}, {"scope": ["customer/updated"]},
                               {"scope": None, "id": "2"}, "note", 7]},
        ])
        return Case("wrong types", json.dumps(payload).encode(), headers=self.headers())

    def missing_fields(self) -> Case:
        payload = self.rng.choice([
            {"scope": "customer/updated"}, {"id": "1"}, {"notifications": [{}]},
            {"notifications": [{"scope": "customer/updated"}, {"id": "fz-1"}]},
            {"attempt": 0}, {"notifications": [{"scope": "", "id": "1"}]},
            {"Notifications": [{"Scope": "customer/created", "Id": None, "External_Id": None}]},
        ])
        return Case("missing fields", json.dumps(payload).encode(), headers=self.headers())

    def bad_auth(self) -> Case:
        auth = self.rng.choice([None, "", "Bearer", "Bearer wrong", f"Basic {KEY}",
                                f"Bearer {KEY}x", KEY, f"Bearer  {KEY[:-1]}"])
        headers = {"Content-Type": "application/json"}
        if auth is not None:
            headers["Authorization"] = auth
        notes = [self.note(f"never-{self.rng.randrange(100)}")]
        raw = self.shape(notes)
        if self.rng.random() < 0.2:  # a body the size of a big webhook, still read away
            raw = json.dumps({"notifications": notes, "pad": "x" * (LIMIT - 200)}).encode()
        return Case("bad auth", raw, headers=headers)

    def wrong_method_or_path(self) -> Case:
        method = self.rng.choice(["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
        path = self.rng.choice([WEBHOOK_PATH, WEBHOOK_PATH + "/", "/webhooks", "/", "/nope",
                                "/healthz", "/readyz"])
        if method == "GET" and path in ("/healthz", "/readyz"):
            method = "POST"
        note, _ = self.valid_note()
        body = None if self.rng.random() < 0.3 else json.dumps([note]).encode()
        if body is not None and self.rng.random() < 0.1:
            body += b" " * self.rng.randint(100_000, LIMIT)
        return Case("wrong methods and paths", body, method, path, self.headers())


# Kind → how many of it. Heavy (near-limit) requests are a few dozen of the total.
PLAN: list[tuple[Callable[[Generator], Case], int]] = [
    (Generator.valid, 700),
    (Generator.invalid_ids, 700),
    (Generator.hostile_number, 400),
    (Generator.deep, 200),
    (Generator.large_envelope, 8),
    (Generator.over_limit, 40),
    (Generator.random_bytes, 300),
    (Generator.broken_json, 400),
    (Generator.wrong_types, 250),
    (Generator.missing_fields, 250),
    (Generator.bad_auth, 300),
    (Generator.wrong_method_or_path, 250),
]


def generated_cases(seed: int) -> list[Case]:
    generator = Generator(seed)
    cases = [make(generator) for make, count in PLAN for _ in range(count)]
    random.Random(seed).shuffle(cases)
    return cases


def check_answer(case: Case, answer: Answer) -> str | None:
    """What is wrong with this answer to this case, or None."""
    if answer.status >= 500:
        return f"{case.kind}: {answer.status}"
    if case.method == "HEAD":  # no body to read
        return None if 400 <= answer.status < 500 else f"{case.kind}: {answer.status}"
    try:
        body = json.loads(answer.body)
    except ValueError:
        return f"{case.kind}: {answer.status} without a JSON body"
    if case.expect == "202":
        if answer.status != 202 or body != {"accepted": case.accepted, "coalesced":
                                            body.get("coalesced"), "ignored": 0, "rejected": []}:
            return f"{case.kind}: {answer.status} {body} for a valid webhook"
        return None
    if not 400 <= answer.status < 500 or not body.get("error"):
        return f"{case.kind}: {answer.status} for hostile input"
    if case.expect == "400 with accepted" and (
            answer.status != 400 or body.get("accepted") != case.accepted
            or not body.get("rejected")):
        return f"{case.kind}: {answer.status}, accepted {body.get('accepted')} " \
               f"of {case.accepted}, rejected {len(body.get('rejected') or [])}"
    return None


def queued_ids(client: redis.Redis) -> list[str]:
    messages = [json.loads(raw) for raw in client.lrange(QUEUE, 0, -1)]
    return [json.loads(base64.b64decode(m["body"]))[1]["customer_id"] for m in messages]


def test_generated_hostile_requests_get_4xx_keep_their_connection_and_queue_nothing_invalid(
    served: Served, redis_client: redis.Redis
) -> None:
    cases = generated_cases(SEED)
    assert len([c for c in cases if c.kind != "valid"]) >= 3000
    client = Client(served.port)
    wrong: list[str] = []
    sent: Counter[str] = Counter()
    expected: set[str] = set()
    for case in cases:
        sent[case.kind] += 1
        answer = client.send(case.kind, case.method, case.path, case.body, case.headers,
                             case.declared_length)
        if answer is None:
            continue
        problem = check_answer(case, answer)
        if problem:
            wrong.append(problem)
        expected |= case.queues
    # The figures in the README's receiver section come from this line (pytest -s).
    print(f"\nsent {sum(sent.values())}: {dict(sent)}; reconnects after Connection: close "
          f"{client.reconnects}")

    assert client.dropped == []
    assert wrong == []
    queued = queued_ids(redis_client)
    assert len(queued) == len(set(queued)), "a pending record was queued twice"
    assert set(queued) == expected
    pending = {key.split(":", 3)[3] for key in redis_client.keys("ipk:pending:customer:*")}
    assert pending == expected
    health = Client(served.port).send("health", "GET", "/healthz", None, {})
    assert health is not None and health.status == 200
    assert json.loads(health.body) == {"status": "ok", "redis": "reachable"}
    log = served.log.read_text(errors="replace")
    assert "Traceback" not in log and "Error handling request" not in log
