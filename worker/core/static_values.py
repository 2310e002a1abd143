"""The value of a static mapping (or a ``{value: X}`` formula argument), with its YAML type.

Static values keep their type into Klaviyo: ``true``/``false`` become JSON booleans, numbers
stay numbers, and text is text — a quoted value is always text. Klaviyo segments on a boolean
and on the text "true" differently, so a mapping must say which one it means.

Plain (unquoted) values are read by the YAML 1.2 core schema (``true``, ``false``, ``null``,
decimal, ``0x``/``0o`` integers and decimal floats). Where the older YAML 1.1 rules, which
most YAML readers still apply, would read the same text differently (``yes``, ``no``, ``on``,
``off``, dates, ``010``, ``1_000``, ``1:30``, ``1e3``) the value is refused: the writer must
quote it for text or write the boolean or number plainly, rather than have us guess.
Values JSON cannot carry (``.inf``, ``.nan``, dates, binary) are refused too.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False,
         "FALSE": False}
_DECIMAL = re.compile(r"^[-+]?[0-9]+$")
_OCTAL = re.compile(r"^0o[0-7]+$")
_HEX = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_SPECIAL_FLOAT = re.compile(r"^(?:[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
_RESOLVER = Resolver()  # the resolver SafeLoader uses (YAML 1.1 implicit types)
_JSON_SCALARS = (type(None), bool, int, float, str)


class StaticValueError(ValueError):
    """Why a static value cannot be used (the loader adds the file and line)."""


def core_schema_value(text: str) -> Any:
    """A plain scalar as the YAML 1.2 core schema reads it."""
    if _NULL.match(text):
        return None
    if text in _BOOL:
        return _BOOL[text]
    if _DECIMAL.match(text):
        return int(text)
    if _OCTAL.match(text):
        return int(text[2:], 8)
    if _HEX.match(text):
        return int(text[2:], 16)
    if _FLOAT.match(text) or _SPECIAL_FLOAT.match(text):
        return float(text.replace(".", "", 1) if _SPECIAL_FLOAT.match(text) else text)
    return text


def typed_value(node: ScalarNode, constructor: SafeConstructor) -> Any:
    """The node's value with its type kept; raises StaticValueError when it is ambiguous or
    cannot travel as JSON."""
    try:
        loaded = constructor.construct_object(node, deep=True)
    except yaml.YAMLError:
        raise StaticValueError(f"has an unsupported YAML tag {node.tag!r}") from None
    if node.style is None and node.tag == _implicit_tag(node.value):
        core = core_schema_value(node.value)
        if not _same(core, loaded):
            raise StaticValueError(
                f"{node.value!r} is read differently by YAML readers: quote it for text, "
                "or write true/false or a plain number")
    if not isinstance(loaded, _JSON_SCALARS):
        raise StaticValueError(f"a {type(loaded).__name__} value cannot be sent to Klaviyo; "
                               "quote it to send it as text")
    if isinstance(loaded, float) and not math.isfinite(loaded):
        raise StaticValueError("infinite or NaN numbers cannot be sent to Klaviyo")
    return loaded


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


def _implicit_tag(text: str) -> str:
    """The tag YAML gives an untagged plain scalar: a node whose tag differs was tagged
    explicitly (``!!str 10``), and then the writer has said what they mean."""
    return str(_RESOLVER.resolve(ScalarNode, text, (True, False)))
