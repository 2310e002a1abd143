"""Klaviyo's ``filter`` query parameter: ``equals(email,"a@b.com")``, ``any(id,['x','y'])``,
``greater-than(subscriptions.email.marketing.suppression.timestamp,2026-12-01T00:00:00Z)``,
several conditions joined by commas (AND). Strings must be quoted and datetimes must not
(Klaviyo's grammar); anything else is "Invalid filter provided".
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sandbox.klaviyo_errors import invalid_filter

# field -> {"single": operators taking one value, "list": operators taking a list}; the shape
# of the spec's x-klaviyo-filters.
FilterRules = Mapping[str, Mapping[str, frozenset[str]]]

IDENTITY_RULES = {"single": frozenset({"equals"}), "list": frozenset({"any", "equals"})}
# "datetime": operators taking an unquoted datetime.
TIME_RULES = {"datetime": frozenset({"greater-than", "less-than"})}
SUPPRESSION_TIME_RULES = {"datetime": frozenset({"greater-than", "greater-or-equal",
                                                 "less-than", "less-or-equal"})}
SUPPRESSION_TIMESTAMP = "subscriptions.email.marketing.suppression.timestamp"
PROFILE_FILTERS: FilterRules = {
    **{name: IDENTITY_RULES for name in ("id", "email", "phone_number", "external_id")},
    "created": TIME_RULES, "updated": TIME_RULES,
    SUPPRESSION_TIMESTAMP: SUPPRESSION_TIME_RULES,
}
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "greater-than": operator.gt, "greater-or-equal": operator.ge,
    "less-than": operator.lt, "less-or-equal": operator.le,
}


def parse_datetime(value: Any) -> datetime | None:
    """An ISO 8601 datetime (``Z`` or an offset; none means UTC), else None."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
LIST_FILTERS: FilterRules = {"name": IDENTITY_RULES, "id": IDENTITY_RULES}


@dataclass(frozen=True)
class Condition:
    field: str
    values: tuple[str, ...]
    operator: str = "equals"

    def matches(self, record: Mapping[str, Any]) -> bool:
        compare = _COMPARISONS.get(self.operator)
        if compare is None:
            return record.get(self.field) in self.values
        actual, wanted = parse_datetime(record.get(self.field)), parse_datetime(self.values[0])
        return actual is not None and wanted is not None and compare(actual, wanted)


def parse_filter(text: str, rules: FilterRules) -> list[Condition]:
    parser = _Parser(text)
    conditions = [parser.condition(rules)]
    while parser.peek() == ",":
        parser.expect(",")
        conditions.append(parser.condition(rules))
    if not parser.at_end():
        raise invalid_filter()
    return conditions


class _Parser:
    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def at_end(self) -> bool:
        self.skip_spaces()
        return self.pos >= len(self.text)

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] == " ":
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if not self.at_end() else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise invalid_filter()
        self.pos += 1

    def word(self) -> str:
        self.skip_spaces()
        start = self.pos
        while self.pos < len(self.text) and (self.text[self.pos].isalnum()
                                             or self.text[self.pos] in "_-."):
            self.pos += 1
        if start == self.pos:
            raise invalid_filter()
        return self.text[start:self.pos]

    def quoted(self) -> str:
        quote = self.peek()
        if quote not in ("'", '"'):
            raise invalid_filter()
        self.pos += 1
        chars: list[str] = []
        # Raw indexing here: spaces inside a quoted value are data (an unencoded "+" arrives
        # as one and must then fail to match, as it does against the real API).
        while self.pos < len(self.text) and self.text[self.pos] != quote:
            if self.text[self.pos] == "\\" and self.pos + 1 < len(self.text):
                self.pos += 1
            chars.append(self.text[self.pos])
            self.pos += 1
        if self.pos >= len(self.text):
            raise invalid_filter()
        self.pos += 1
        return "".join(chars)

    def condition(self, rules: FilterRules) -> Condition:
        operator = self.word()
        self.expect("(")
        field = self.word()
        self.expect(",")
        if self.peek() == "[":
            kind, values = "list", self.quoted_list()
        elif self.peek() in ("'", '"'):
            kind, values = "single", (self.quoted(),)
        else:
            kind, values = "datetime", (self.bare_datetime(),)
        self.expect(")")
        if operator not in rules.get(field, {}).get(kind, frozenset()):
            raise invalid_filter()
        return Condition(field, values, operator)

    def bare_datetime(self) -> str:
        """An unquoted ISO 8601 datetime (a "+" decoded to a space is not one)."""
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in ",)":
            self.pos += 1
        value = self.text[start:self.pos]
        if parse_datetime(value) is None or " " in value.strip() or "T" not in value:
            raise invalid_filter()
        return value.strip()

    def quoted_list(self) -> tuple[str, ...]:
        self.expect("[")
        values = [self.quoted()]
        while self.peek() == ",":
            self.expect(",")
            values.append(self.quoted())
        self.expect("]")
        return tuple(values)
