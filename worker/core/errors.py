"""One error hierarchy for the whole worker, classified by what the caller should do.

``RetryableError`` means "try again later"; ``FinalError`` means "dead-letter it, a person
must act". Messages carry field names and reasons, never personal data or response bodies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from worker.core import reasons


@dataclass(frozen=True)
class FieldError:
    """One validation problem: the field (a name, never its value), a reason code and a
    human message that does not echo the value."""

    field: str
    reason: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason, "message": self.message}


class SyncError(Exception):
    """Root of every error the sync pipeline raises on purpose."""


class ConfigurationError(SyncError):
    """Raised when settings or the mapping file are unusable; the process must not start."""


class RetryableError(SyncError):
    """Raised when a call failed in a way that may succeed later (429, 5xx, timeouts)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ThrottledError(RetryableError):
    """Raised when Klaviyo answered 429; ``retry_after`` holds its Retry-After seconds."""


class RateLimited(ThrottledError):
    """Raised when our own rate limiter has no slot within the allowed wait: nothing was
    sent, so a retry for this reason does not use up the step's attempts."""


class FinalError(SyncError):
    """Raised when retrying cannot help; the customer goes to the dead-letter store."""

    reason: str = reasons.KLAVIYO_REJECTED

    def __init__(
        self, message: str, *, reason: str | None = None, errors: list[FieldError] | None = None
    ) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        self.errors: list[FieldError] = list(errors or [])


class ValidationFailed(FinalError):
    """Raised when mapped data breaks a validation rule; ``errors`` lists every problem."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(
            "validation failed: " + ", ".join(f"{e.field}={e.reason}" for e in errors),
            reason=headline_reason(errors),
            errors=errors,
        )


class NotFoundError(FinalError):
    """Raised when iPaaS.com has no record with the requested id."""

    reason = reasons.CUSTOMER_NOT_FOUND


class KlaviyoRejected(FinalError):
    """Raised when Klaviyo refused a request for good (a 4xx other than 404/409/429)."""

    def __init__(self, message: str, *, status: int, errors: list[FieldError] | None = None):
        super().__init__(message, reason=reasons.KLAVIYO_REJECTED, errors=errors)
        self.status = status


class DuplicateProfile(FinalError):
    """Raised when Klaviyo answered 409 duplicate_profile; carries the existing id if given."""

    reason = reasons.IDENTIFIER_CONFLICT

    def __init__(self, duplicate_profile_id: str | None) -> None:
        super().__init__("klaviyo reported a duplicate profile")
        self.duplicate_profile_id = duplicate_profile_id


class ProfileNotFound(FinalError):
    """Raised when Klaviyo answered 404 for a profile id we sent (stale link or conflict)."""

    reason = reasons.IDENTIFIER_CONFLICT


@dataclass
class StepOutcome:
    """What one pipeline step ended with, for history and the CLI."""

    step: str
    outcome: str  # "synced" | "created" | "updated" | "skipped" | "rejected" | "retrying"
    reason: str | None = None
    profile_id: str | None = None
    errors: list[FieldError] = field(default_factory=list)


def headline_reason(errors: list[FieldError]) -> str:
    """The one reason code that names a list of problems (see ``reasons.PRIORITY``)."""
    present = {e.reason for e in errors}
    for code in reasons.PRIORITY:
        if code in present:
            return code
    return errors[0].reason if errors else reasons.KLAVIYO_REJECTED
