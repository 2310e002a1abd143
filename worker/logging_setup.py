"""Masking email addresses, phone numbers and API keys in every log line we emit.

The service logs ids and codes, never data; this filter is the net under that rule for text
it does not control (a library's exception, a traceback). It sits on handlers, so it sees
every record a handler writes, including those propagated from other loggers.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from worker.core.scrub import scrub_text


class MaskingFilter(logging.Filter):
    """Rewrites a record's message (and traceback text) with personal data masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler to report
            return True
        record.msg = scrub_text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = scrub_text(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub_text(record.stack_info)
        return True


def install_masking(logger: logging.Logger | None = None) -> int:
    """Adds the filter to every handler of ``logger`` (the root logger by default) that does
    not have one yet; returns how many handlers got it."""
    target = logger if logger is not None else logging.getLogger()
    added = 0
    for handler in target.handlers:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter())
            added += 1
    return added


def mask_celery_logs() -> None:
    """Masks the worker's logs: Celery configures its loggers as it starts, so the filter is
    installed by its after-setup signals."""
    # Imported when used: the receiver masks its logs without loading Celery.
    from celery.signals import after_setup_logger, after_setup_task_logger

    def on_setup(logger: logging.Logger | None = None, **_: Any) -> None:
        install_masking(logger)
        install_masking()

    after_setup_logger.connect(on_setup, weak=False)
    after_setup_task_logger.connect(on_setup, weak=False)
