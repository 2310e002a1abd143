"""Klaviyo's ``filter`` query parameter: ``equals(email,"a@b.com")``, ``any(id,['x','y'])``,
several conditions joined by commas (AND). Only quoted string values are understood, which
covers every field the sandbox filters on; anything else is "Invalid filter provided".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.klaviyo_errors import invalid_filter

# field -> {"single": operators taking one value, "list": operators taking a list}; the shape
# of the spec's x-klaviyo-filters.
FilterRules = Mapping[str, Mapping[str, frozenset[str]]]

IDENTITY_RULES = {"single": frozenset({"equals"}), "list": frozenset({"any", "equals"})}
PROFILE_FILTERS: FilterRules = {
    name: IDENTITY_RULES for name in ("id", "email", "phone_number", "external_id")
}
LIST_FILTERS: FilterRules = {"name": IDENTITY_RULES, "id": IDENTITY_RULES}


@dataclass(frozen=True)
class Condition:
    field: str
    values: tuple[str, ...]

    def matches(self, record: Mapping[str, Any]) -> bool:
        return record.get(self.field) in self.values


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
        else:
            kind, values = "single", (self.quoted(),)
        self.expect(")")
        if operator not in rules.get(field, {}).get(kind, frozenset()):
            raise invalid_filter()
        return Condition(field, values)

    def quoted_list(self) -> tuple[str, ...]:
        self.expect("[")
        values = [self.quoted()]
        while self.peek() == ",":
            self.expect(",")
            values.append(self.quoted())
        self.expect("]")
        return tuple(values)
