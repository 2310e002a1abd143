"""Pure classification of HTTP outcomes into what the caller should do.

One function decides for every outside call (Klaviyo and iPaaS.com alike), so retry
behaviour is the same everywhere and can be tested without a network.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504, 524})
_EXPECTED_AVAILABLE = re.compile(r"Expected available in (\d+(?:\.\d+)?) second", re.I)


class Verdict(StrEnum):
    OK = "ok"
    RETRY = "retry"  # transient: back off and try again
    THROTTLED = "throttled"  # 429: wait Retry-After, slow the shared limiter
    NOT_FOUND = "not_found"  # 404
    CONFLICT = "conflict"  # 409
    REJECTED = "rejected"  # any other 4xx: retrying the same request cannot help


@dataclass(frozen=True)
class Classification:
    verdict: Verdict
    retry_after: float | None = None


def classify_response(
    status: int, headers: dict[str, str] | None = None, body_text: str = ""
) -> Classification:
    """Classify one HTTP response. ``headers`` keys may be in any case."""
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    if 200 <= status < 300:
        return Classification(Verdict.OK)
    if status == 429:
        return Classification(Verdict.THROTTLED, retry_after_seconds(lowered, body_text))
    if status in RETRYABLE_STATUSES:
        return Classification(Verdict.RETRY, retry_after_seconds(lowered, body_text))
    if status == 403 and _is_cloudflare_challenge(lowered, body_text):
        # Cloudflare's bot challenge says nothing about our key: it passes with time.
        return Classification(Verdict.RETRY)
    if status == 404:
        return Classification(Verdict.NOT_FOUND)
    if status == 409:
        return Classification(Verdict.CONFLICT)
    if 500 <= status < 600:
        return Classification(Verdict.RETRY)
    return Classification(Verdict.REJECTED)


def classify_transport_error(kind: str) -> Classification:
    """Timeouts, refused or reset connections: always worth another try."""
    return Classification(Verdict.RETRY)


def retry_after_seconds(headers: dict[str, str], body_text: str = "") -> float | None:
    """``Retry-After`` (seconds) if present, else Klaviyo's "Expected available in N".
    ``headers`` keys may be in any case."""
    value = {k.lower(): v for k, v in headers.items()}.get("retry-after")
    if value is not None:
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan  # an HTTP-date form; fall through to the body hint
        if math.isfinite(seconds):
            return max(0.0, seconds)
        # "inf" or "nan" would park a task forever or never: use the body hint instead.
    match = _EXPECTED_AVAILABLE.search(body_text or "")
    return float(match.group(1)) if match else None


def _is_cloudflare_challenge(headers: dict[str, str], body_text: str) -> bool:
    if headers.get("cf-mitigated", "").lower() == "challenge":
        return True
    content_type = headers.get("content-type", "").lower()
    return "text/html" in content_type and "cloudflare" in body_text.lower()
