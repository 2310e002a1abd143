"""The Klaviyo sandbox's random faults and rate limits, driven over real HTTP on loopback.

Window tests start right after a wall-clock second begins (and well inside a minute) so that
a quick run of requests lands in one fixed window. Every request sent here that the real API
would accept is checked against Klaviyo's OpenAPI spec after each test.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox.httpserver import Request
from sandbox.klaviyo_faults import PROFILE_OPERATIONS, RATE_LIMIT_DOCS, RandomFaults
from sandbox.klaviyo_limits import OPERATION_TIERS, TIERS, RateLimiter, tier_limits
from sandbox.klaviyo_sandbox import KlaviyoSandbox
from tests.contract.openapi_contract import violations

KEY = "pk_test_key"
SPEC = Path(__file__).parents[1] / "contract" / "openapi-stable.json"
RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
DROPPED = 0  # the status a dropped connection is tallied under


class Api:
    def __init__(self, sandbox: KlaviyoSandbox, key: str = KEY) -> None:
        self.sandbox, self.session = sandbox, requests.Session()
        self.headers = {"Authorization": f"Klaviyo-API-Key {key}", "revision": "2026-07-15",
                        "Accept": "application/vnd.api+json"}

    def call(self, method: str, path: str, body: Any = None) -> requests.Response:
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = "application/vnd.api+json"
        return self.session.request(method, self.sandbox.url + path, headers=headers,
                                    data=None if body is None else json.dumps(body), timeout=10)

    def get_profiles(self) -> requests.Response:
        return self.call("GET", "/api/profiles")

    def get_lists(self) -> requests.Response:
        return self.call("GET", "/api/lists")

    def upsert(self, email: str) -> requests.Response:
        return self.call("POST", "/api/profile-import",
                         {"data": {"type": "profile", "attributes": {"email": email}}})

    def create_list(self, name: str) -> requests.Response:
        return self.call("POST", "/api/lists",
                         {"data": {"type": "list", "attributes": {"name": name}}})

    def status_or_dropped(self, method: str, path: str) -> int:
        try:
            return self.call(method, path).status_code
        except requests.ConnectionError:
            return DROPPED


@pytest.fixture(scope="module")
def sandbox() -> Iterator[KlaviyoSandbox]:
    with KlaviyoSandbox(api_key=KEY) as running:
        yield running


@pytest.fixture
def api(sandbox: KlaviyoSandbox) -> Iterator[Api]:
    sandbox.reset()
    sandbox.interceptors.clear()
    yield Api(sandbox)
    sandbox.interceptors.clear()
    sandbox.disable_rate_limits()
    assert violations(distinct(sandbox.server.requests)) == []


def distinct(recorded: list[Request]) -> list[Request]:
    """One of each identical request: the contract checker is slow and thousands of copies of
    the same request cannot fail it differently."""
    seen: dict[tuple[Any, ...], Request] = {}
    for request in recorded:
        key = (request.method, request.path, request.raw_query, request.body,
               tuple(sorted(request.headers.items())))
        seen.setdefault(key, request)
    return list(seen.values())


def at_start_of_a_second(min_left_in_minute: float = 5.0) -> None:
    """Sleep until a fresh wall-clock second begins, at least ``min_left_in_minute`` seconds
    before the minute ends, so a quick run of requests shares both windows."""
    now = time.time()
    if 60 - now % 60 < min_left_in_minute + 1:
        now = math.floor(now / 60 + 1) * 60
    time.sleep(max(0.0, math.floor(now) + 1.005 - time.time()))


def statuses(responses: list[requests.Response]) -> Counter[int]:
    return Counter(response.status_code for response in responses)


# -- random faults ------------------------------------------------------------------------


def test_seeded_rates_come_close_to_the_configured_ones(api: Api) -> None:
    faults = RandomFaults(seed=11, operations=PROFILE_OPERATIONS,
                          error_rates={503: 0.3, 429: 0.1}, drop_rate=0.05)
    api.sandbox.interceptors.append(faults)
    seen = Counter(api.status_or_dropped("GET", "/api/profiles") for _ in range(2000))

    assert set(seen) == {200, 503, 429, DROPPED}
    assert abs(seen[503] / 2000 - 0.3) < 0.05
    assert abs(seen[429] / 2000 - 0.1) < 0.03
    assert abs(seen[DROPPED] / 2000 - 0.05) < 0.02
    assert faults.injected == {503: seen[503], 429: seen[429], 0: seen[DROPPED]}
    assert api.sandbox.call_counts["get_profiles"] == 2000


def test_the_same_seed_repeats_the_same_run(api: Api) -> None:
    def run(seed: int) -> list[int]:
        faults = RandomFaults(seed=seed, error_rates={503: 0.3, 500: 0.1, 429: 0.1})
        api.sandbox.interceptors[:] = [faults]
        return [api.get_lists().status_code for _ in range(200)]

    first, again, other = run(5), run(5), run(6)
    assert first == again
    assert first != other
    assert set(first) == {200, 503, 500, 429}


def test_an_injected_429_is_klaviyos_throttled_answer(api: Api) -> None:
    api.sandbox.interceptors.append(RandomFaults(error_rates={429: 1.0}, retry_after=3))
    response = api.upsert("ana@example.com")

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert not set(RATE_HEADERS) & set(response.headers)
    [error] = response.json()["errors"]
    assert (error["status"], error["code"], error["title"]) == (
        429, "throttled", "Request was throttled.")
    assert error["detail"] == "Request was throttled. Expected available in 3 seconds."
    assert error["source"] == {"pointer": "/data"}
    assert error["links"] == {"type": RATE_LIMIT_DOCS}
    assert api.sandbox.all_profiles() == []


def test_an_injected_5xx_never_reaches_the_endpoint(api: Api) -> None:
    api.sandbox.interceptors.append(RandomFaults(error_rates={503: 1.0}))
    response = api.upsert("ana@example.com")

    assert response.status_code == 503
    assert response.json()["errors"][0]["code"] == "error"
    assert api.sandbox.all_profiles() == []


def test_a_dropped_connection_is_a_connection_error_for_the_client(api: Api) -> None:
    faults = RandomFaults(operations={"create_or_update_profile"}, drop_rate=1.0)
    api.sandbox.interceptors.append(faults)
    assert api.get_profiles().status_code == 200  # the kept-alive connection is the one dropped

    with pytest.raises(requests.ConnectionError):
        api.upsert("ana@example.com")
    assert faults.injected == {0: 1}
    assert api.sandbox.all_profiles() == []
    assert api.get_profiles().status_code == 200


def test_latency_delays_only_the_chosen_operations(api: Api) -> None:
    faults = RandomFaults(operations={"get_profiles"}, latency=(0.25, 0.3))
    api.sandbox.interceptors.append(faults)

    started = time.monotonic()
    assert api.get_profiles().status_code == 200
    slow = time.monotonic() - started
    started = time.monotonic()
    assert api.get_lists().status_code == 200
    fast = time.monotonic() - started

    assert 0.25 <= slow < 1.0
    assert fast < 0.2
    assert not faults.injected


def test_latency_does_not_serialise_concurrent_requests(api: Api) -> None:
    api.sandbox.interceptors.append(RandomFaults(latency=(0.3, 0.3)))
    threads = [threading.Thread(target=lambda: Api(api.sandbox).get_lists()) for _ in range(8)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - started < 1.2  # eight in a row would take 2.4 s


def test_operations_outside_the_set_are_never_faulted(api: Api) -> None:
    faults = RandomFaults(operations=set(PROFILE_OPERATIONS), error_rates={503: 0.5},
                          drop_rate=0.5)
    api.sandbox.interceptors.append(faults)

    assert statuses([api.get_lists() for _ in range(50)]) == {200: 50}
    assert api.create_list("VIP").status_code == 201
    assert not faults.injected
    assert {api.status_or_dropped("GET", "/api/profiles") for _ in range(20)} <= {503, DROPPED}


@pytest.mark.parametrize("settings", [
    {"error_rates": {503: 0.7, 429: 0.4}},
    {"error_rates": {503: 0.5}, "drop_rate": 0.6},
    {"error_rates": {503: -0.1}},
    {"error_rates": {200: 0.1}},
    {"latency": (0.5, 0.1)},
])
def test_impossible_settings_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RandomFaults(**settings)


# -- rate limits over HTTP ----------------------------------------------------------------


def test_a_burst_over_the_limit_is_throttled_in_that_second(api: Api) -> None:
    api.sandbox.enforce_rate_limits(limits={"L": (5, 20)})
    at_start_of_a_second()
    responses = [api.get_profiles() for _ in range(10)]

    assert [r.status_code for r in responses] == [200] * 5 + [429] * 5
    for response in responses[5:]:
        assert response.headers["Retry-After"] == "1"
        assert response.json()["errors"][0]["code"] == "throttled"
        assert not set(RATE_HEADERS) & set(response.headers)
    assert [r.headers["RateLimit-Remaining"] for r in responses[:5]] == ["19", "18", "17", "16",
                                                                        "15"]
    for response in responses[:5]:
        assert response.headers["RateLimit-Limit"] == "20"
        assert 1 <= int(response.headers["RateLimit-Reset"]) <= 60
    assert api.sandbox.rate_stats() == {"L": {
        "burst_limit": 5, "steady_limit": 20, "max_seen_per_second": 10,
        "max_seen_per_minute": 10, "throttled": 5, "seen": 10}}

    time.sleep(1.0)  # the next burst window
    assert api.get_profiles().status_code == 200


def test_operations_of_a_tier_share_its_windows_and_tiers_are_separate(api: Api) -> None:
    api.sandbox.enforce_rate_limits(limits={"L": (3, 100), "M": (1, 100)})
    at_start_of_a_second()
    profile_reads = [api.get_profiles(), api.get_lists(), api.upsert("ana@example.com"),
                     api.get_lists()]
    list_creations = [api.create_list("VIP"), api.create_list("Newsletter")]

    assert [r.status_code for r in profile_reads] == [200, 200, 201, 429]
    assert [r.status_code for r in list_creations] == [201, 429]
    stats = api.sandbox.rate_stats()
    assert (stats["L"]["seen"], stats["L"]["throttled"]) == (4, 1)
    assert (stats["M"]["seen"], stats["M"]["throttled"]) == (2, 1)


def test_the_steady_window_caps_a_minute(api: Api) -> None:
    api.sandbox.enforce_rate_limits(limits={"L": (100, 8)})
    at_start_of_a_second(min_left_in_minute=10)
    first = [api.get_profiles() for _ in range(12)]
    time.sleep(1.0)  # a new burst window, the same minute
    later = api.get_profiles()

    assert statuses(first) == {200: 8, 429: 4}
    assert later.status_code == 429
    waits = [int(r.headers["Retry-After"]) for r in [*first[8:], later]]
    assert all(2 <= wait <= 60 for wait in waits)  # until the minute ends, not the second
    assert first[7].headers["RateLimit-Remaining"] == "0"
    assert api.sandbox.rate_stats()["L"] == {
        "burst_limit": 100, "steady_limit": 8, "max_seen_per_second": 12,
        "max_seen_per_minute": 13, "throttled": 5, "seen": 13}


def test_scale_multiplies_the_documented_limits(api: Api) -> None:
    api.sandbox.enforce_rate_limits(scale=0.04)  # L: 3/s 30/min; M: 0.4/s → at least 1
    at_start_of_a_second()
    profile_reads = [api.get_profiles() for _ in range(5)]
    list_creations = [api.create_list("VIP"), api.create_list("Newsletter")]

    assert statuses(profile_reads) == {200: 3, 429: 2}
    assert statuses(list_creations) == {201: 1, 429: 1}
    stats = api.sandbox.rate_stats()
    assert (stats["L"]["burst_limit"], stats["L"]["steady_limit"]) == (3, 30)
    assert (stats["M"]["burst_limit"], stats["M"]["steady_limit"]) == (1, 6)

    api.sandbox.enforce_rate_limits(scale=10)
    assert api.get_profiles().headers["RateLimit-Limit"] == "7500"
    assert api.sandbox.rate_stats() == {"L": {
        "burst_limit": 750, "steady_limit": 7500, "max_seen_per_second": 1,
        "max_seen_per_minute": 1, "throttled": 0, "seen": 1}}


def test_concurrent_clients_never_get_more_than_the_limit_through(api: Api) -> None:
    api.sandbox.enforce_rate_limits(limits={"L": (10, 1000)})
    passed: list[int] = []
    lock = threading.Lock()

    def client() -> None:
        own = Api(api.sandbox)
        codes = [own.get_profiles().status_code for _ in range(25)]
        with lock:
            passed.extend(code for code in codes if code == 200)

    at_start_of_a_second()
    started = time.time()
    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds_touched = math.floor(time.time()) - math.floor(started) + 1

    assert 10 <= len(passed) <= 10 * seconds_touched
    stats = api.sandbox.rate_stats()["L"]
    assert stats["seen"] == 100
    assert stats["throttled"] == 100 - len(passed)
    assert stats["max_seen_per_second"] >= 100 / seconds_touched


def test_faults_apply_only_to_requests_the_limiter_let_through(api: Api) -> None:
    faults = RandomFaults(error_rates={503: 1.0})
    api.sandbox.interceptors.append(faults)
    api.sandbox.enforce_rate_limits(limits={"L": (1, 100)})
    at_start_of_a_second()
    first, second = api.get_profiles(), api.get_profiles()

    assert (first.status_code, second.status_code) == (503, 429)
    assert first.headers["RateLimit-Limit"] == "100"
    assert faults.injected == {503: 1}


def test_only_answers_other_than_429_carry_the_rate_limit_headers(api: Api) -> None:
    api.sandbox.enforce_rate_limits(limits={"L": (100, 100)})
    api.sandbox.interceptors.append(RandomFaults(operations={"get_profiles"},
                                                 error_rates={429: 1.0}, retry_after=2))
    throttled, served = api.get_profiles(), api.get_lists()

    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "2")
    assert not set(RATE_HEADERS) & set(throttled.headers)
    assert served.status_code == 200
    assert served.headers["RateLimit-Remaining"] == "98"


def test_requests_failing_authentication_do_not_reach_the_limiter(api: Api) -> None:
    api.sandbox.enforce_rate_limits(limits={"L": (1, 1)})
    api.sandbox.server.record_requests = False  # a wrong key is not a request Klaviyo accepts
    try:
        assert Api(api.sandbox, key="pk_wrong").get_profiles().status_code == 401
    finally:
        api.sandbox.server.record_requests = True
    assert api.sandbox.rate_stats() == {}
    assert api.get_profiles().status_code == 200


def test_disabling_rate_limits_lets_everything_through(api: Api) -> None:
    api.sandbox.enforce_rate_limits(limits={"L": (1, 1)})
    assert api.get_profiles().status_code == 200
    assert api.get_profiles().status_code == 429

    api.sandbox.disable_rate_limits()
    responses = [api.get_profiles() for _ in range(10)]
    assert statuses(responses) == {200: 10}
    assert not set(RATE_HEADERS) & set(responses[0].headers)
    assert api.sandbox.rate_stats() == {}


def test_reset_turns_rate_limits_off(api: Api) -> None:
    api.sandbox.enforce_rate_limits(limits={"L": (1, 1)})
    api.get_profiles()
    api.sandbox.reset()
    assert statuses([api.get_profiles() for _ in range(3)]) == {200: 3}


# -- the limiter's windows on a fake clock --------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def outcomes(limiter: RateLimiter, clock: Clock, *times: float) -> list[int]:
    answers = []
    for at in times:
        clock.now = at
        refusal = limiter.admit("get_profiles").refusal
        answers.append(200 if refusal is None else int(refusal.headers["Retry-After"]))
    return answers


def test_windows_are_aligned_to_wall_clock_seconds_and_minutes() -> None:
    clock = Clock(0)
    limiter = RateLimiter({"L": (2, 5)}, clock)

    # 119.9 and 120.0 are one tenth apart but in different seconds and different minutes.
    assert outcomes(limiter, clock, 119.5, 119.9, 119.95, 120.0, 120.1, 120.5) == [
        200, 200, 1, 200, 200, 1]
    # Three more fill the minute from 120 (steady 5): the next must wait for 180.
    assert outcomes(limiter, clock, 121.0, 122.0, 123.0, 150.2) == [200, 200, 200, 30]
    assert outcomes(limiter, clock, 180.0) == [200]
    assert limiter.stats()["L"] == {
        "burst_limit": 2, "steady_limit": 5, "max_seen_per_second": 3,
        "max_seen_per_minute": 7, "throttled": 3, "seen": 11}


def test_refused_requests_use_no_quota() -> None:
    clock = Clock(1000.0)
    limiter = RateLimiter({"L": (1, 3)}, clock)
    assert outcomes(limiter, clock, 1000.0, 1000.1, 1000.2, 1001.0, 1002.0) == [
        200, 1, 1, 200, 200]


def test_when_both_windows_are_full_the_wait_is_until_the_minute_ends() -> None:
    clock = Clock(0)
    limiter = RateLimiter({"L": (1, 2)}, clock)
    assert outcomes(limiter, clock, 10.0, 10.5, 11.0, 11.5) == [200, 1, 200, 49]


def test_operations_without_a_tier_or_with_limits_off_pass() -> None:
    limiter = RateLimiter({"M": (1, 1)}, Clock(0))
    assert [limiter.admit("get_profiles").refusal for _ in range(3)] == [None] * 3
    assert limiter.admit("merge_profiles").refusal is None
    assert limiter.stats() == {}


def test_tier_limits_scale_and_override() -> None:
    assert tier_limits() == TIERS
    scaled = tier_limits(0.1, {"XL": (7, 9)})
    assert scaled["L"] == (8, 75)  # 7.5 rounds to even
    assert scaled["XS"] == (1, 2)  # never below one request
    assert scaled["XL"] == (7, 9)  # overrides are not scaled
    with pytest.raises(ValueError):
        tier_limits(1.0, {"XXL": (1, 1)})
    with pytest.raises(ValueError):
        tier_limits(0)


def test_every_served_operation_has_the_tier_the_spec_gives_it(sandbox: KlaviyoSandbox) -> None:
    spec = json.loads(SPEC.read_text())
    declared = {operation["operationId"]: operation["x-klaviyo-ratelimit"]
                for item in spec["paths"].values() for operation in item.values()
                if isinstance(operation, dict) and "operationId" in operation}
    assert set(sandbox.operation_ids) == set(OPERATION_TIERS)
    for operation_id in sandbox.operation_ids:
        burst, steady = TIERS[OPERATION_TIERS[operation_id]]
        limit = declared[operation_id]
        assert (limit["burst"], limit["steady"]) == (f"{burst}/s", f"{steady}/m"), operation_id
