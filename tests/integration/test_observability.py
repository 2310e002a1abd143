"""Sentry events and log lines leave the process with personal data and keys masked.

Sentry runs for real (sentry-sdk initialised by ``init_sentry``) with a transport that keeps
the envelopes in memory instead of sending them; logging runs for real into a string buffer.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from celery.signals import after_setup_logger, after_setup_task_logger
from gunicorn.config import Config
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from producers.serve import MaskingLogger, gunicorn_options
from worker import observability
from worker.config import Secret, Settings
from worker.logging_setup import MaskingFilter, install_masking

EMAIL, PHONE, KEY = "jane.doe@example.com", "+15555550123", "pk_abcdef0123456789"
SECRETS = (EMAIL, PHONE, KEY, "5555550123")


class KeptEnvelopes(Transport):
    """Keeps what Sentry would send."""

    sent: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        KeptEnvelopes.sent.append(envelope)

    def flush(self, timeout: float, callback: Any = None) -> None:
        pass


@pytest.fixture
def sentry() -> Iterator[list[Envelope]]:
    KeptEnvelopes.sent = []
    settings = Settings(sentry_dsn=Secret("https://public@sentry.example.invalid/1"))
    assert observability.init_sentry(settings, "worker", transport=KeptEnvelopes)
    try:
        yield KeptEnvelopes.sent
    finally:
        sentry_sdk.init()  # no DSN: the client goes quiet again
        observability._initialised = False


def events(envelopes: list[Envelope]) -> list[dict[str, Any]]:
    return [e.get_event() for e in envelopes if e.get_event() is not None]  # type: ignore[misc]


def test_no_dsn_means_no_sentry() -> None:
    assert observability.init_sentry(Settings(), "worker") is False
    with observability.step_scope("1", None, "profile"):  # a no-op, and cheap
        pass


def test_captured_exception_is_scrubbed_and_tagged(sentry: list[Envelope]) -> None:
    log = logging.getLogger("ipaas_klaviyo.test")
    with observability.step_scope("1001", "0f8fad5b-d9cb-469f-a165-70867728950e", "profile"):
        log.warning("about to call with %s", EMAIL)  # becomes a breadcrumb
        try:
            customer_email = EMAIL  # a local variable: must not travel either
            raise ValueError(f"Klaviyo said {customer_email} / {PHONE} bad, key {KEY}")
        except ValueError:
            sentry_sdk.capture_exception()
    sentry_sdk.flush()
    (event,) = events(sentry)
    text = json.dumps(event)
    for secret in SECRETS:
        assert secret not in text
    value = event["exception"]["values"][-1]["value"]
    assert value == "Klaviyo said [email] / [phone] bad, key [key]"
    assert event["tags"]["customer_id"] == "1001"
    assert event["tags"]["tracking_guid"] == "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert event["tags"]["step"] == "profile"
    assert event["tags"]["component"] == "worker"
    crumbs = [c.get("message") for c in event["breadcrumbs"]["values"]]
    assert "about to call with [email]" in crumbs
    frames = event["exception"]["values"][-1]["stacktrace"]["frames"]
    assert all("vars" not in f for f in frames)


def test_logged_error_becomes_a_scrubbed_tagged_event(sentry: list[Envelope]) -> None:
    with observability.step_scope("77", None, "lists"):
        logging.getLogger("ipaas_klaviyo.sync").error("refused %s", EMAIL)
    sentry_sdk.flush()
    (event,) = events(sentry)
    assert EMAIL not in json.dumps(event)
    assert event["logentry"]["message"] == "refused %s"
    assert event["logentry"]["params"] == ["[email]"]
    assert event["tags"]["customer_id"] == "77"
    assert "tracking_guid" not in event["tags"]


def test_tags_do_not_leak_past_the_step(sentry: list[Envelope]) -> None:
    with observability.step_scope("1", "g", "profile"):
        pass
    sentry_sdk.capture_message("later")
    sentry_sdk.flush()
    (event,) = events(sentry)
    assert "customer_id" not in event.get("tags", {})


# --- logs -------------------------------------------------------------------------------------


def buffered_logger(name: str) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    logger = logging.getLogger(name)
    logger.handlers = [logging.StreamHandler(out)]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, out


def test_log_lines_are_masked_and_ids_kept() -> None:
    logger, out = buffered_logger("ipaas_klaviyo.test_masking")
    assert install_masking(logger) == 1
    assert install_masking(logger) == 0  # once per handler
    logger.info(json.dumps({"customer_id": "12345678", "step": "profile", "outcome": "created",
                            "tracking_guid": "0f8fad5b-d9cb-469f-a165-70867728950e"}))
    logger.warning("customer %s has %s and %s", "12345678", EMAIL, "(201) 555-0101")
    try:
        raise RuntimeError(f"upstream echoed {EMAIL} with Klaviyo-API-Key {KEY}")
    except RuntimeError:
        logger.exception("unexpected error in profile step for customer %s", "12345678")
    text = out.getvalue()
    for secret in (EMAIL, KEY, "555-0101"):
        assert secret not in text
    lines = text.splitlines()
    assert json.loads(lines[0])["customer_id"] == "12345678"
    assert json.loads(lines[0])["tracking_guid"] == "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert lines[1] == "customer 12345678 has [email] and [phone]"
    assert "RuntimeError: upstream echoed [email] with Klaviyo-API-Key [key]" in text


def test_celery_logger_setup_installs_the_filter() -> None:
    # worker.tasks.celery_app connects the handlers at import; Celery fires these as it starts.
    import worker.tasks.celery_app  # noqa: F401

    logger, out = buffered_logger("ipaas_klaviyo.test_celery_masking")
    after_setup_logger.send(sender=None, logger=logger, loglevel=logging.INFO, logfile=None,
                            format="%(message)s", colorize=False)
    task_logger, task_out = buffered_logger("ipaas_klaviyo.test_celery_task_masking")
    after_setup_task_logger.send(sender=None, logger=task_logger, loglevel=logging.INFO,
                                 logfile=None, format="%(message)s", colorize=False)
    logger.info("sent to %s", EMAIL)
    task_logger.info("phone %s", PHONE)
    assert out.getvalue() == "sent to [email]\n"
    assert task_out.getvalue() == "phone [phone]\n"


def test_gunicorn_logs_are_masked() -> None:
    cfg = Config()
    for name, value in gunicorn_options("127.0.0.1", 8080, 1).items():
        if name in cfg.settings:
            cfg.set(name, value)
    assert cfg.logger_class is MaskingLogger
    glog = MaskingLogger(cfg)
    handlers = glog.error_log.handlers
    assert handlers and all(any(isinstance(f, MaskingFilter) for f in h.filters)
                            for h in handlers)
    out = io.StringIO()
    handlers[0].setStream(out)
    glog.error("worker saw %s", EMAIL)
    assert "[email]" in out.getvalue() and EMAIL not in out.getvalue()
