"""Conditions of list formulas: ``<Field> == <literal>`` and ``<Field> != <literal>``.

iPaaS.com writes them as C# (``FirstMatch(Addresses, "IsPrimaryBilling == true")``); we accept
only this one comparison shape, parsed, never evaluated as code. Literals are ``true``/``false``,
numbers, or quoted or bare strings, and compare case-insensitively, so ``true``, ``"True"`` and
a JSON ``true`` are the same value.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from worker.core.fieldnames import json_key

_CONDITION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(==|!=)\s*(.*?)\s*$")
_NUMBER = re.compile(r"^[+-]?\d+(?:\.\d+)?$")


@dataclass(frozen=True)
class Condition:
    field: str
    key: str
    negated: bool
    literal: str  # canonical form, see _canonical

    def matches(self, item: object) -> bool:
        if not isinstance(item, dict):
            return False
        equal = _canonical(item.get(self.key)) == self.literal
        return equal != self.negated


@functools.lru_cache(maxsize=256)
def parse_condition(text: str) -> Condition:
    """Parse ``Field == literal`` or ``Field != literal``; raises ValueError if malformed."""
    found = _CONDITION.match(text)
    if not found or not found.group(3):
        raise ValueError("a condition must read '<Field> == <value>' or '<Field> != <value>'")
    name, operator, raw = found.groups()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        literal: object = raw[1:-1]
    else:
        literal = raw
    return Condition(name, json_key(name), operator == "!=", _canonical_text(literal))


def _canonical(value: object) -> str | None:
    """One spelling per value so `true`, `"True"` and True compare equal, as do 1 and "1.0"."""
    return None if value is None else _canonical_text(value)


def _canonical_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip().lower()
    if _NUMBER.match(text):
        number = float(text)
        return str(int(number)) if number.is_integer() else repr(number)
    return text
