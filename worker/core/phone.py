"""Phone numbers to E.164, the only format Klaviyo accepts.

Mirrors iPaaS.com's ``GetKlaviyoFormattedPhoneNumber``: strip everything but digits, keep a
leading ``+`` as "the country code is already there", otherwise read the digits as a national
number of the customer's country. Only numbers ``phonenumbers`` calls valid are returned:
Klaviyo may silently drop a malformed phone, so we would rather reject than guess.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import phonenumbers

_INTERNATIONAL_PREFIX = "00"


@dataclass(frozen=True)
class PhoneResult:
    e164: str | None
    invalid: bool  # a non-empty value that is not a valid phone number


NO_PHONE = PhoneResult(None, False)
INVALID_PHONE = PhoneResult(None, True)


def format_phone(raw: object, region: str) -> PhoneResult:
    """E.164 for ``raw`` read in ``region`` (ISO alpha-2); empty input is no phone, not an
    invalid one."""
    if raw is None or isinstance(raw, bool):
        return NO_PHONE
    text = str(raw).strip()
    if not text:
        return NO_PHONE
    digits = "".join(ch for ch in text if ch.isdigit() and ch.isascii())
    if not digits:
        return INVALID_PHONE
    return _format_digits(digits, text.startswith("+"), region.upper())


@functools.lru_cache(maxsize=65536)
def _format_digits(digits: str, has_country_code: bool, region: str) -> PhoneResult:
    if has_country_code:
        return _valid_e164("+" + digits, None)
    result = _valid_e164(digits, region)
    if result.invalid and digits.startswith(_INTERNATIONAL_PREFIX):
        # "00" is the international prefix almost everywhere, but phonenumbers only knows it
        # for regions that use it (not the US, whose prefix is 011).
        return _valid_e164("+" + digits[len(_INTERNATIONAL_PREFIX) :], None)
    return result


def _valid_e164(number: str, region: str | None) -> PhoneResult:
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return INVALID_PHONE
    if not phonenumbers.is_valid_number(parsed):
        return INVALID_PHONE
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return PhoneResult(e164, False)
