"""The pieces under the batched lists step, each against the real thing: the Redis buffer
on the run's throwaway Redis, and the batch sender against the Klaviyo sandbox."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
import requests

from sandbox.klaviyo_faults import Fault
from sandbox.klaviyo_sandbox import KlaviyoSandbox
from tests.contract.openapi_contract import violations
from worker.adapters.http import HttpAdapter
from worker.adapters.klaviyo.client import KlaviyoClient
from worker.adapters.subscription_batches import BatchRow, send_subscription_batch
from worker.adapters.subscription_buffer import QueuedStep, SubscriptionBuffer
from worker.core import reasons
from worker.core.batch_outcomes import BatchKey, QueuedItem
from worker.core.errors import FieldError, RetryableError
from worker.core.subscriptions import REMOVE_FROM_LIST, SUBSCRIBE, UNSUBSCRIBE

API_KEY = "pk_batch_key"
SUB = BatchKey(SUBSCRIBE, None).encode()
UNSUB = BatchKey(UNSUBSCRIBE, None).encode()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def item(step: str, action: int, customer: str) -> QueuedItem:
    return QueuedItem(step, action, customer, f"P{customer}", f"c{customer}@example.com")


def queue_one(buffer: SubscriptionBuffer, customer: str, *keys: str) -> list[QueuedItem]:
    step = f"step-{customer}"
    items = [item(step, n, customer) for n in range(len(keys))]
    buffer.queue(QueuedStep(step, customer, f"P{customer}", "add", "guid"),
                 list(zip(keys, items, strict=True)))
    return items


# -- the buffer --------------------------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def buffer(redis_client: redis.Redis, clock: Clock) -> SubscriptionBuffer:
    return SubscriptionBuffer(redis_client, ttl_seconds=600, now=clock)


def test_queue_appends_per_key_and_a_redelivered_step_adds_nothing(
    buffer: SubscriptionBuffer, redis_client: redis.Redis
) -> None:
    assert queue_one(buffer, "1", SUB)
    step = QueuedStep("step-2", "2", "P2", "add")
    lengths = buffer.queue(step, [(SUB, item("step-2", 0, "2")), (UNSUB, item("step-2", 1, "2"))])
    assert lengths == {SUB: 2, UNSUB: 1}
    assert buffer.queue(step, [(SUB, item("step-2", 0, "2"))]) is None
    assert buffer.waiting(SUB) == 2
    assert 0 < redis_client.ttl(buffer.buffer_key(SUB)) <= 600  # personal data expires


def test_take_moves_at_most_a_batch_in_flight_and_ack_drops_it(
    buffer: SubscriptionBuffer, redis_client: redis.Redis
) -> None:
    for n in range(5):
        queue_one(buffer, str(n), SUB)
    batch = buffer.take(SUB, 3, lease_seconds=30)
    assert batch is not None and [i.customer_id for i in batch.items] == ["0", "1", "2"]
    assert buffer.waiting(SUB) == 2
    assert buffer.in_flight(SUB, batch.batch_id) == batch
    buffer.ack(SUB, batch.batch_id)
    assert buffer.in_flight(SUB, batch.batch_id) is None
    assert not redis_client.exists(buffer.inflight_key(SUB, batch.batch_id))
    assert buffer.take(SUB, 3, 30) is not None and buffer.take(SUB, 3, 30) is None


def test_only_a_batch_whose_lease_ran_out_is_reclaimed_and_only_once(
    buffer: SubscriptionBuffer, clock: Clock
) -> None:
    queue_one(buffer, "1", SUB)
    batch = buffer.take(SUB, 10, lease_seconds=30)
    assert batch is not None
    assert buffer.abandoned(SUB) == [] and buffer.reclaim(SUB, batch.batch_id, 30) is None
    assert buffer.next_lease_end(SUB) == clock.now + 30
    clock.now += 31
    assert buffer.abandoned(SUB) == [batch.batch_id]
    again = buffer.reclaim(SUB, batch.batch_id, 30)
    assert again is not None and again.items == batch.items
    assert buffer.reclaim(SUB, batch.batch_id, 30) is None  # the second taker loses
    buffer.extend(SUB, batch.batch_id, 100)
    clock.now += 60
    assert buffer.abandoned(SUB) == []


def test_the_flush_marker_is_claimed_once_until_released(buffer: SubscriptionBuffer) -> None:
    assert buffer.claim_flush(SUB, 10)
    assert not buffer.claim_flush(SUB, 10)
    buffer.release_flush(SUB)
    assert buffer.claim_flush(SUB, 10)


def test_a_step_settles_once_when_its_last_action_is_settled(
    buffer: SubscriptionBuffer
) -> None:
    unsubscribe, remove = queue_one(buffer, "9", UNSUB, BatchKey(REMOVE_FROM_LIST, "L").encode())
    assert buffer.settle(remove) is None
    assert buffer.settle(remove) is None  # sent twice after a crash: counted once
    done = buffer.settle(unsubscribe)
    assert done is not None and done.reason is None
    assert (done.step.customer_id, done.step.profile_id, done.step.collection,
            done.step.tracking_guid) == ("9", "P9", "add", "guid")
    # Settled, but its outcome not yet recorded (the flush died in between): a batch sent
    # again hands the step back until the outcome is written.
    again = buffer.settle(unsubscribe)
    assert again is not None and again.step == done.step
    buffer.recorded(done.step.step_id)
    assert buffer.settle(unsubscribe) is None  # settled steps are not finished twice
    assert buffer.settle(remove) is None


def test_the_first_refusal_is_what_the_step_ends_with(buffer: SubscriptionBuffer) -> None:
    first, second = queue_one(buffer, "4", SUB, UNSUB)
    problem = FieldError("email", reasons.KLAVIYO_REJECTED, "invalid: Invalid input.")
    assert buffer.settle(first, (reasons.KLAVIYO_REJECTED, [problem])) is None
    done = buffer.settle(second)
    assert done is not None
    assert done.reason == reasons.KLAVIYO_REJECTED and done.errors == [problem]


# -- the batch sender ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def running_sandbox() -> Iterator[KlaviyoSandbox]:
    with KlaviyoSandbox(api_key=API_KEY) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(running_sandbox: KlaviyoSandbox) -> Iterator[KlaviyoSandbox]:
    running_sandbox.reset()
    running_sandbox.interceptors.clear()
    running_sandbox.server.requests.clear()
    yield running_sandbox
    running_sandbox.interceptors.clear()
    problems = violations(running_sandbox.server.requests)
    assert problems == [], "\n".join(problems[:20])


@pytest.fixture
def client(sandbox: KlaviyoSandbox) -> Iterator[KlaviyoClient]:
    with requests.Session() as session:
        yield KlaviyoClient(HttpAdapter(session, timeout=10), base_url=sandbox.url,
                            api_key=API_KEY, revision="2026-07-15")


def rows(sandbox: KlaviyoSandbox, count: int) -> list[BatchRow]:
    made = []
    for n in range(count):
        email = f"row{n}@example.com"
        made.append(BatchRow(sandbox.add_profile(email=email), email, None))
    return made


def test_one_call_subscribes_a_whole_batch_to_a_list(
    sandbox: KlaviyoSandbox, client: KlaviyoClient
) -> None:
    list_id = sandbox.add_list("Batch", "single_opt_in")
    batch = rows(sandbox, 250)
    assert send_subscription_batch(client, BatchKey(SUBSCRIBE, list_id), batch) == {}
    assert sandbox.call_counts["bulk_subscribe_profiles"] == 1
    assert sandbox.list_members("Batch") == {row.profile_id for row in batch}


def test_a_row_klaviyo_refuses_is_reported_and_the_rest_is_sent_again(
    sandbox: KlaviyoSandbox, client: KlaviyoClient
) -> None:
    list_id = sandbox.add_list("Batch", "single_opt_in")
    sandbox.interceptors.append(Fault(
        "bulk_subscribe_profiles", 400,
        pointer="/data/attributes/profiles/data/3/attributes/email", times=1))
    batch = rows(sandbox, 8)
    refused = send_subscription_batch(client, BatchKey(SUBSCRIBE, list_id), batch)
    assert list(refused) == [3]
    assert [(e.field, e.reason) for e in refused[3]] == [("email", reasons.KLAVIYO_REJECTED)]
    assert sandbox.call_counts["bulk_subscribe_profiles"] == 2
    assert sandbox.list_members("Batch") == {r.profile_id for n, r in enumerate(batch) if n != 3}


def test_a_row_without_email_or_phone_is_refused_before_sending(
    sandbox: KlaviyoSandbox, client: KlaviyoClient
) -> None:
    batch = [*rows(sandbox, 2), BatchRow("01NOBODY", None, None)]
    refused = send_subscription_batch(client, BatchKey(UNSUBSCRIBE, None), batch)
    assert list(refused) == [2] and refused[2][0].reason == reasons.MISSING_IDENTIFIER
    assert sandbox.call_counts["bulk_unsubscribe_profiles"] == 1


def test_a_refusal_naming_no_row_refuses_every_row(
    sandbox: KlaviyoSandbox, client: KlaviyoClient
) -> None:
    batch = rows(sandbox, 3)
    refused = send_subscription_batch(client, BatchKey(SUBSCRIBE, "NOSUCHLIST"), batch)
    assert sorted(refused) == [0, 1, 2]
    assert sandbox.call_counts["bulk_subscribe_profiles"] == 1


def test_removal_sends_a_repeated_profile_once_and_answers_for_both_rows(
    sandbox: KlaviyoSandbox, client: KlaviyoClient
) -> None:
    list_id = sandbox.add_list("Leaving", "single_opt_in")
    batch = rows(sandbox, 3)
    send_subscription_batch(client, BatchKey(SUBSCRIBE, list_id), batch)
    twice = [batch[0], batch[1], batch[0]]
    assert send_subscription_batch(client, BatchKey(REMOVE_FROM_LIST, list_id), twice) == {}
    removal = [r for r in sandbox.server.requests if r.method == "DELETE"]
    assert len(removal) == 1 and len(removal[0].json()["data"]) == 2
    assert sandbox.list_members("Leaving") == {batch[2].profile_id}


def test_a_transient_failure_propagates_so_the_caller_retries(
    sandbox: KlaviyoSandbox, client: KlaviyoClient
) -> None:
    sandbox.interceptors.append(Fault("bulk_unsubscribe_profiles", 503, times=1))
    with pytest.raises(RetryableError):
        send_subscription_batch(client, BatchKey(UNSUBSCRIBE, None), rows(sandbox, 2))
