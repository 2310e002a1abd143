"""The fleet-wide Klaviyo rate limiter against a real (throwaway) Redis, flushed per test.

Times are read back from Redis (the grant log holds Redis ``TIME`` stamps), so the window
checks judge what the limiter decided, not when a test thread happened to look.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event

import pytest
import redis
import requests

from sandbox.httpserver import Request, Response, SandboxServer
from sandbox.klaviyo_sandbox import KlaviyoSandbox
from worker.adapters.http import HttpAdapter
from worker.adapters.klaviyo.client import KlaviyoClient
from worker.adapters.rate_limited_http import RateLimitedHttp
from worker.adapters.rate_limiter import RedisRateLimiter, account_id
from worker.core.errors import ConfigurationError, ThrottledError
from worker.core.rate_limits import effective_limits

pytestmark = pytest.mark.integration

ACCOUNT = "acct-one"
MARGIN = 0.1
BURST_WINDOW = 1.0 + MARGIN


def limiter_for(client: redis.Redis, limits: dict[str, tuple[int, int]], *,
                account: str = ACCOUNT, max_wait_seconds: float = 30.0,
                sleep: Callable[[float], None] = time.sleep) -> RedisRateLimiter:
    return RedisRateLimiter(client, account, limits, margin_seconds=MARGIN,
                            max_wait_seconds=max_wait_seconds, sleep=sleep)


def busiest_fixed_window(stamps: list[float], length: float) -> int:
    """The most stamps in one window of ``length`` seconds aligned to the epoch, as a
    server counting fixed windows sees them."""
    windows = Counter(int(stamp // length) for stamp in stamps)
    return max(windows.values(), default=0)


# -- burst and steady caps -------------------------------------------------------------


def test_burst_cap_grants_exactly_the_burst_then_reports_the_wait(
        redis_client: redis.Redis) -> None:
    limiter = limiter_for(redis_client, {"T": (5, 100)})
    answers = [limiter.try_acquire("T") for _ in range(10)]
    assert answers[:5] == [0.0] * 5
    assert all(0.0 < wait <= BURST_WINDOW for wait in answers[5:])
    # The wait is when the oldest grant leaves the window, so it shrinks as time passes.
    assert answers[-1] <= answers[5]
    assert len(limiter.recent_grants("T")) == 5


def test_a_slot_frees_exactly_when_the_reported_wait_is_over(
        redis_client: redis.Redis) -> None:
    limiter = limiter_for(redis_client, {"T": (2, 100)})
    assert [limiter.try_acquire("T") for _ in range(2)] == [0.0, 0.0]
    wait = limiter.try_acquire("T")
    assert wait > 0.9
    # Still taken until the reported wait is over (asked again at once: no timing margin)...
    remaining = limiter.try_acquire("T")
    assert 0.0 < remaining <= wait
    # ...and free once it is.
    time.sleep(remaining + 0.05)
    assert limiter.try_acquire("T") == 0.0


def test_steady_cap_holds_across_bursts(redis_client: redis.Redis) -> None:
    limiter = limiter_for(redis_client, {"T": (10, 3)})
    assert [limiter.try_acquire("T") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.try_acquire("T")
    assert 59.0 < wait <= 60.0 + MARGIN
    assert len(limiter.recent_grants("T")) == 3


def test_limits_lowered_at_run_time_apply_to_the_existing_log(
        redis_client: redis.Redis) -> None:
    generous = limiter_for(redis_client, {"T": (5, 100)})
    assert [generous.try_acquire("T") for _ in range(4)] == [0.0] * 4
    strict = limiter_for(redis_client, {"T": (2, 100)})
    assert strict.try_acquire("T") > 0.0
    assert generous.try_acquire("T") == 0.0  # still under its own five


# -- acquire ---------------------------------------------------------------------------


def test_acquire_waits_for_a_slot_then_takes_it(redis_client: redis.Redis) -> None:
    limiter = limiter_for(redis_client, {"T": (2, 100)})
    assert limiter.acquire("T") == 0.0
    assert limiter.acquire("T") == 0.0
    started = time.monotonic()
    waited = limiter.acquire("T")
    elapsed = time.monotonic() - started
    assert 0.9 < waited <= BURST_WINDOW
    assert 0.9 < elapsed < BURST_WINDOW + 0.4
    grants = limiter.recent_grants("T")
    assert len(grants) == 3
    assert grants[2] - grants[0] >= BURST_WINDOW


def test_acquire_raises_instead_of_waiting_past_max_wait(redis_client: redis.Redis) -> None:
    sleeps: list[float] = []
    limiter = limiter_for(redis_client, {"T": (1, 100)}, max_wait_seconds=0.5,
                          sleep=sleeps.append)
    limiter.acquire("T")
    with pytest.raises(ThrottledError) as caught:
        limiter.acquire("T")
    assert caught.value.retry_after is not None
    assert 0.5 < caught.value.retry_after <= BURST_WINDOW
    assert sleeps == []  # gave up at once rather than sleeping part of the way
    assert len(limiter.recent_grants("T")) == 1


def test_unknown_tier_is_a_configuration_error(redis_client: redis.Redis) -> None:
    limiter = limiter_for(redis_client, {"T": (1, 100)})
    with pytest.raises(ConfigurationError):
        limiter.try_acquire("nope")


# -- penalty ---------------------------------------------------------------------------


def test_penalty_blocks_every_limiter_of_the_account_then_lifts(
        redis_client: redis.Redis) -> None:
    first = limiter_for(redis_client, {"T": (100, 1000)})
    second = limiter_for(redis_client, {"T": (100, 1000)})  # another worker process
    first.penalize("T", 2.0)  # wide margins: a busy machine may stall a second here
    assert 1.0 < first.try_acquire("T") <= 2.0
    waited = second.try_acquire("T")
    assert 1.0 < waited <= 2.0
    assert first.recent_grants("T") == []
    time.sleep(waited + 0.05)
    assert second.try_acquire("T") == 0.0


def test_a_shorter_penalty_never_cuts_a_longer_one_short(redis_client: redis.Redis) -> None:
    limiter = limiter_for(redis_client, {"T": (100, 1000)})
    limiter.penalize("T", 5.0)
    limiter.penalize("T", 0.1)
    limiter.penalize("T", 0.0)
    assert limiter.try_acquire("T") > 4.5


def test_penalty_keys_expire(redis_client: redis.Redis) -> None:
    limiter = limiter_for(redis_client, {"T": (100, 1000)})
    limiter.penalize("T", 2.0)
    keys = redis_client.keys("ipk:ratelimit:*")
    assert len(keys) == 1
    assert 0 < redis_client.pttl(keys[0]) <= 2001


def test_grant_logs_expire_after_their_window(redis_client: redis.Redis) -> None:
    limiter = limiter_for(redis_client, {"T": (100, 1000)})
    limiter.try_acquire("T")
    ttls = sorted(redis_client.pttl(key) for key in redis_client.keys("ipk:ratelimit:*"))
    assert len(ttls) == 2
    assert 0 < ttls[0] <= 1100 + 1000
    assert 60_000 < ttls[1] <= 60_100 + 1000


# -- independence ----------------------------------------------------------------------


def test_accounts_and_tiers_have_budgets_of_their_own(redis_client: redis.Redis) -> None:
    limits = {"L": (1, 100), "M": (1, 100)}
    one = limiter_for(redis_client, limits, account="one")
    two = limiter_for(redis_client, limits, account="two")
    assert one.try_acquire("L") == 0.0
    assert one.try_acquire("L") > 0.0
    assert one.try_acquire("M") == 0.0
    assert two.try_acquire("L") == 0.0
    one.penalize("M", 10.0)
    assert two.try_acquire("M") == 0.0
    assert one.try_acquire("L") < 2.0  # the other tier's penalty does not reach here


def test_account_id_is_short_stable_and_hides_the_key() -> None:
    key = "pk_live_0123456789abcdef0123456789"
    ident = account_id(key)
    assert ident == account_id(key) == account_id(f" {key}\n")
    assert len(ident) == 16
    assert int(ident, 16) >= 0
    assert "0123456789" not in ident
    assert account_id(key + "x") != ident


# -- many processes, one budget --------------------------------------------------------


def hammer(url: str, limits: dict[str, tuple[int, int]], seconds: float,
           ready: Queue[str], go: Event, results: Queue[int]) -> None:
    """One worker process: take slots as fast as the limiter allows for ``seconds``."""
    client = redis.Redis.from_url(url)
    limiter = RedisRateLimiter(client, ACCOUNT, limits, margin_seconds=MARGIN,
                               max_wait_seconds=0.5)
    ready.put("ready")
    go.wait(30)
    granted = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            limiter.acquire("T")
            granted += 1
        except ThrottledError:
            time.sleep(0.02)
    client.close()
    results.put(granted)


def run_fleet(url: str, limits: dict[str, tuple[int, int]], seconds: float,
              processes: int = 4) -> list[int]:
    context = multiprocessing.get_context("spawn")
    ready: Queue[str] = context.Queue()
    results: Queue[int] = context.Queue()
    go = context.Event()
    workers = [context.Process(target=hammer, args=(url, limits, seconds, ready, go, results))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    try:
        for _ in workers:
            ready.get(timeout=60)
        go.set()
        counts = [results.get(timeout=seconds + 30) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()
    assert [worker.exitcode for worker in workers] == [0] * processes
    return counts


def test_four_processes_never_exceed_burst_or_steady(redis_url: str) -> None:
    limits = {"T": (5, 20)}
    counts = run_fleet(redis_url, limits, seconds=5.0)
    client = redis.Redis.from_url(redis_url)
    grants = limiter_for(client, limits).recent_grants("T")
    client.close()
    assert sum(counts) == len(grants)
    # 20 slots fit in 5 s (four bursts 1.1 s apart), so the steady cap is what stops them.
    assert len(grants) == 20
    assert busiest_fixed_window(grants, 1.0) <= 5
    assert busiest_fixed_window(grants, 60.0) <= 20
    assert sum(1 for count in counts if count > 0) >= 2  # the budget really was shared


def test_four_processes_keep_every_burst_window_under_the_limit(redis_url: str) -> None:
    limits = {"T": (5, 10_000)}
    counts = run_fleet(redis_url, limits, seconds=4.0)
    client = redis.Redis.from_url(redis_url)
    grants = limiter_for(client, limits).recent_grants("T")
    client.close()
    assert sum(counts) == len(grants)
    assert len(grants) >= 15  # conservative, not stalled: ~5 per 1.1 s
    assert busiest_fixed_window(grants, 1.0) <= 5
    # Stronger than any fixed window: every six grants span the padded window.
    spans = [grants[i + 5] - grants[i] for i in range(len(grants) - 5)]
    assert min(spans) >= BURST_WINDOW - 1e-6
    # And a server whose seconds start at any other offset sees no more either.
    for offset in (0.1, 0.25, 0.5, 0.75, 0.9):
        assert busiest_fixed_window([g + offset for g in grants], 1.0) <= 5


# -- the HTTP adapter ------------------------------------------------------------------


@pytest.fixture
def throttling_server() -> Iterator[SandboxServer]:
    def answer(request: Request) -> Response:
        if request.query.get("throttle"):
            return Response(429, {"errors": [{"status": 429, "code": "throttled"}]},
                            headers={"Retry-After": "3"})
        return Response(200, {"data": []})

    server = SandboxServer()
    server.route("GET", "/api/profiles", answer)
    with server:
        yield server


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as opened:
        yield opened


def test_rate_limited_http_penalizes_the_tier_on_a_429(
        redis_client: redis.Redis, throttling_server: SandboxServer,
        session: requests.Session) -> None:
    limiter = limiter_for(redis_client, effective_limits())
    http = RateLimitedHttp(HttpAdapter(session, timeout=5), limiter)
    url = throttling_server.url + "/api/profiles"
    with pytest.raises(ThrottledError) as caught:
        http.send("get_profiles", "GET", url, headers={}, params={"throttle": "1"})
    assert caught.value.retry_after == 3.0
    # get_profiles is tier L: the whole fleet now waits out Retry-After for L, not for M.
    other_worker = limiter_for(redis_client, effective_limits())
    assert 2.5 < other_worker.try_acquire("L") <= 3.0
    assert other_worker.try_acquire("M") == 0.0


def test_rate_limited_http_waits_for_a_slot_before_sending(
        redis_client: redis.Redis, throttling_server: SandboxServer,
        session: requests.Session) -> None:
    seen: list[tuple[str, int]] = []
    inner = HttpAdapter(session, timeout=5,
                        on_response=lambda operation, status: seen.append((operation, status)))
    limiter = limiter_for(redis_client, effective_limits({"L": (1, 100)}),
                          max_wait_seconds=0.3)
    http = RateLimitedHttp(inner, limiter)
    assert http.session is session and http.on_response is inner.on_response
    url = throttling_server.url + "/api/profiles"
    response, _ = http.send("get_profiles", "GET", url, headers={})
    assert response.status_code == 200
    with pytest.raises(ThrottledError):
        http.send("get_profiles", "GET", url, headers={})
    assert len(throttling_server.requests) == 1  # the refused call never left the process
    assert seen == [("get_profiles", 200)]
    assert redis_client.keys("*:penalty") == []  # a local refusal penalizes nobody


def test_klaviyo_client_threads_stay_inside_the_sandbox_fixed_windows(
        redis_client: redis.Redis) -> None:
    api_key = "pk_test_rate_limited_0123"
    limits = effective_limits({"L": (4, 1000)})
    limiter = RedisRateLimiter(redis_client, account_id(api_key), limits, max_wait_seconds=10)
    failures: list[BaseException] = []

    def work(sandbox: KlaviyoSandbox, seconds: float) -> None:
        with requests.Session() as own_session:
            client = KlaviyoClient(RateLimitedHttp(HttpAdapter(own_session, timeout=5), limiter),
                                   base_url=sandbox.url, api_key=api_key, revision="2026-07-15")
            deadline = time.monotonic() + seconds
            try:
                while time.monotonic() < deadline:
                    client.request("get_profiles", "GET", "/api/profiles")
            except BaseException as exc:  # surfaced by the assertion below
                failures.append(exc)

    with KlaviyoSandbox(api_key=api_key) as sandbox:
        sandbox.enforce_rate_limits(limits={"L": (4, 1000)})
        workers = [threading.Thread(target=work, args=(sandbox, 2.5)) for _ in range(6)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=30)
        stats = sandbox.rate_stats()["L"]
    assert failures == []
    assert stats["throttled"] == 0
    assert stats["max_seen_per_second"] <= 4
    assert stats["seen"] >= 8
