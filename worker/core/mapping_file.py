"""The mapping file: which iPaaS.com values become which Klaviyo profile fields.

Format (YAML; the bundled ``default_mapping.yaml`` reproduces iPaaS.com's seed mapping)::

    add:                      # used while the customer has no Klaviyo profile linked yet
      - {type: static,  value: true,          destination: SubscribeProfile}
      - {type: field,   source: EmailAddress, destination: Email}
      - {type: formula, formula: GetKlaviyoFormattedPhoneNumber, args: [CustomerNumber],
         destination: PhoneNumber}
      - {type: formula, formula: FieldFromFirstMatch,
         args: [Addresses, {value: "IsPrimaryBilling == true"}, {value: Address1}],
         destination: Address1}
    update:                   # used once the customer is linked to a Klaviyo profile
      - {type: field,   source: EmailAddress, destination: Email}

Each mapping has a ``destination`` and one of three types:

- ``static``: ``value`` is a constant that keeps its YAML type: ``true``/``false`` arrive
  in Klaviyo as JSON booleans, numbers as numbers, and a quoted value as text. A plain value
  YAML readers disagree on (``yes``, ``no``, a date, ``010``) must be quoted or rewritten.
- ``field``: ``source`` is a customer field by its iPaaS.com PascalCase name (``EmailAddress``,
  ``CustomerNumber``, ``FirstName``, ``LastName``, ``Company``, ``Id``, ...).
- ``formula``: ``formula`` names a registered formula (see ``worker.core.formulas``) and
  ``args`` lists its arguments. An argument is a bare string (a customer field reference;
  ``Addresses`` and ``CustomFields`` are lists), ``{value: X}`` (a literal), or
  ``{formula: Name, args: [...]}`` (a nested call).

An optional ``description`` documents a mapping. YAML anchors and aliases (and ``<<:``
merges) may share mappings between the two collections. Destinations: Klaviyo attributes
(``Email``, ``PhoneNumber``, ``ExternalId``, ``FirstName``, ``LastName``, ``Organization``,
...), location fields (``Address1``, ``Address2``, ``City``, ``Region``, ``Country``,
``Zip``), ``Id`` (the Klaviyo profile id), ``Type`` (must be the static ``profile``), the
directives ``SubscribeProfile``, ``LIST_{name}`` and ``UCLIST_{name}``, and anything else
becomes a custom profile property. A top-level ``settings`` block is reserved; an optional
``events`` section maps transactions to order events (see ``worker.core.event_mapping``).

Every problem raises ``MappingFileError`` naming the file and the line of the mapping.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from worker.core import event_formulas  # noqa: F401  (registers the event formulas)
from worker.core.errors import ConfigurationError
from worker.core.event_mapping import EVENTS, EventCollections, parse_events
from worker.core.fieldnames import CUSTOMER_FIELDS
from worker.core.formulas import FORMULAS, Call, Expr, FieldRef, Literal
from worker.core.mapping_rule import Mapping
from worker.core.model import (
    ADD,
    ATTRIBUTE_DESTINATIONS,
    ID_DESTINATION,
    LIST_PREFIX,
    LOCATION_DESTINATIONS,
    SUBSCRIBE_DIRECTIVE,
    TYPE_DESTINATION,
    UCLIST_PREFIX,
    UPDATE,
)
from worker.core.static_values import StaticValueError, typed_value

BUNDLED_SOURCE = "<bundled default>"
_MERGE_TAG = "tag:yaml.org,2002:merge"
# Destinations with a meaning of their own. One that differs only in case is almost surely a
# typo that would otherwise turn silently into a custom property.
_RESERVED_DESTINATIONS = {
    name.lower(): name
    for name in (
        *ATTRIBUTE_DESTINATIONS,
        *LOCATION_DESTINATIONS,
        ID_DESTINATION,
        TYPE_DESTINATION,
        SUBSCRIBE_DIRECTIVE,
    )
}
_TOP_LEVEL_KEYS = (ADD, UPDATE, "settings", EVENTS)
_MAPPING_KEYS = {
    "static": {"type", "value", "destination", "description"},
    "field": {"type", "source", "destination", "description"},
    "formula": {"type", "formula", "args", "destination", "description"},
}


class MappingFileError(ConfigurationError):
    """Raised when the mapping file cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class MappingCollections:
    add: tuple[Mapping, ...]
    update: tuple[Mapping, ...]
    source_name: str = BUNDLED_SOURCE
    events: EventCollections = field(default_factory=EventCollections)
    has_events: bool = False  # the file had an events section

    def for_collection(self, name: str) -> tuple[Mapping, ...]:
        return self.update if name == UPDATE else self.add


def load_mapping(
    text: str | None = None, *, source_name: str = BUNDLED_SOURCE
) -> MappingCollections:
    """Parse and check a mapping file; ``None`` loads the bundled default."""
    if text is None:
        text = resources.files("worker.core").joinpath("default_mapping.yaml").read_text("utf-8")
        return _Loader(source_name).load(text)
    loaded = _Loader(source_name).load(text)
    if loaded.has_events:
        return loaded
    # A mapping file without an events section keeps the bundled order events.
    return dataclasses.replace(loaded, events=load_mapping(None).events)


class _Loader:
    def __init__(self, source_name: str) -> None:
        self.source_name = source_name
        self.constructor = SafeConstructor()
        # Which field names a ``field`` mapping may read; event collections switch it.
        self.fields: dict[str, str] = CUSTOMER_FIELDS

    @contextmanager
    def reading(self, fields: dict[str, str]) -> Iterator[None]:
        """Parse event mappings: fields from ``fields``, every destination a property."""
        saved = self.fields
        self.fields = fields
        try:
            yield
        finally:
            self.fields = saved

    def fail(self, node: Node | None, problem: str) -> MappingFileError:
        line = node.start_mark.line + 1 if node is not None else 1
        return MappingFileError(f"{self.source_name} line {line}: {problem}")

    def load(self, text: str) -> MappingCollections:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            line = mark.line + 1 if mark is not None else 1
            raise MappingFileError(
                f"{self.source_name} line {line}: not valid YAML ({error.problem})"
            ) from None
        except yaml.YAMLError:
            raise MappingFileError(f"{self.source_name} line 1: not valid YAML") from None
        if not isinstance(root, MappingNode):
            raise self.fail(root, "the file must be a mapping with 'add' and 'update' lists")
        sections = self.keyed(root)
        for key, (key_node, _) in sections.items():
            if key not in _TOP_LEVEL_KEYS:
                known = ", ".join(sorted(_TOP_LEVEL_KEYS))
                raise self.fail(key_node, f"unknown section {key!r} (known: {known})")
        collections = MappingCollections(
            add=self.collection(root, sections, ADD),
            update=self.collection(root, sections, UPDATE),
            source_name=self.source_name,
        )
        if EVENTS not in sections:
            return collections
        events = parse_events(self, sections[EVENTS][1])
        return dataclasses.replace(collections, events=events, has_events=True)

    def collection(
        self, root: Node, sections: dict[str, tuple[Node, Node]], name: str
    ) -> tuple[Mapping, ...]:
        if name not in sections:
            raise self.fail(root, f"missing the {name!r} collection")
        node = sections[name][1]
        if not isinstance(node, SequenceNode):
            raise self.fail(node, f"{name!r} must be a list of mappings")
        mappings: list[Mapping] = []
        seen: dict[str, int] = {}
        for item in node.value:
            mapping = self.mapping(item)
            if mapping.destination in seen:
                raise self.fail(
                    item,
                    f"duplicate destination {mapping.destination!r} in {name!r} "
                    f"(first at line {seen[mapping.destination]})",
                )
            seen[mapping.destination] = mapping.line
            mappings.append(mapping)
        return tuple(mappings)

    def mapping(self, node: Node) -> Mapping:
        if not isinstance(node, MappingNode):
            raise self.fail(node, "each mapping must be a mapping with 'type' and 'destination'")
        fields = self.keyed(node)
        kind = self.text(node, fields, "type")
        if kind not in _MAPPING_KEYS:
            raise self.fail(node, f"unknown type {kind!r} (known: field, formula, static)")
        for key, (key_node, _) in fields.items():
            if key not in _MAPPING_KEYS[kind]:
                allowed = ", ".join(sorted(_MAPPING_KEYS[kind]))
                raise self.fail(key_node, f"unknown key {key!r} for a {kind} mapping ({allowed})")
        destination = self.destination(node, fields)
        if kind == "static":
            if "value" not in fields:
                raise self.fail(node, "a static mapping needs a 'value'")
            expression: Expr = Literal(self.static_value(fields["value"][1]))
        elif kind == "field":
            expression = self.field_ref(node, self.text(node, fields, "source"))
        else:
            expression = self.call(node, fields)
        if self.fields is not CUSTOMER_FIELDS:
            return Mapping(kind, destination, expression, node.start_mark.line + 1)
        if destination == TYPE_DESTINATION and expression != Literal("profile"):
            raise self.fail(node, "'Type' must be the static value 'profile'")
        return Mapping(kind, destination, expression, node.start_mark.line + 1)

    def destination(self, node: Node, fields: dict[str, tuple[Node, Node]]) -> str:
        if "destination" not in fields:
            raise self.fail(node, "missing destination")
        value = self.scalar(fields["destination"][1], "destination")
        destination = "" if value is None else str(value).strip()
        if not destination:
            raise self.fail(node, "empty destination")
        reserved = _RESERVED_DESTINATIONS.get(destination.lower(), destination)
        if reserved != destination and self.fields is CUSTOMER_FIELDS:
            raise self.fail(
                node, f"unknown destination {destination!r} (did you mean {reserved!r}?)"
            )
        for prefix in (LIST_PREFIX, UCLIST_PREFIX) if self.fields is CUSTOMER_FIELDS else ():
            if destination.startswith(prefix) and not destination.removeprefix(prefix).strip():
                raise self.fail(node, f"{destination!r} needs a list name after {prefix!r}")
        return destination

    def call(self, node: Node, fields: dict[str, tuple[Node, Node]]) -> Call:
        name = self.text(node, fields, "formula")
        args_node = fields["args"][1] if "args" in fields else None
        if args_node is None or (
            isinstance(args_node, ScalarNode) and self.scalar(args_node, "args") is None
        ):
            arg_nodes: list[Node] = []
        elif isinstance(args_node, SequenceNode):
            arg_nodes = list(args_node.value)
        else:
            raise self.fail(args_node, "'args' must be a list")
        return self.formula_call(node, name, arg_nodes)

    def formula_call(self, node: Node, name: str, arg_nodes: list[Node]) -> Call:
        known = FORMULAS.get(name)
        if known is None:
            names = ", ".join(sorted(FORMULAS))
            raise self.fail(node, f"unknown formula {name!r} (known: {names})")
        count = len(arg_nodes)
        if count < known.min_args or (known.max_args is not None and count > known.max_args):
            raise self.fail(node, f"{name} takes {known.arity_text()} argument(s), {count} given")
        args = tuple(self.argument(arg) for arg in arg_nodes)
        problem = known.check(args) if known.check else None
        if problem:
            raise self.fail(node, f"{name}: {problem}")
        return Call(known, args)

    def argument(self, node: Node) -> Expr:
        if isinstance(node, ScalarNode):
            return self.field_ref(node, self.scalar(node, "argument"))
        if not isinstance(node, MappingNode):
            raise self.fail(node, "an argument is a field name, {value: ...} or {formula: ...}")
        fields = self.keyed(node)
        if set(fields) == {"value"}:
            return Literal(self.static_value(fields["value"][1]))
        if "formula" in fields and set(fields) <= {"formula", "args"}:
            return self.call(node, fields)
        raise self.fail(node, "an argument is a field name, {value: ...} or {formula: ...}")

    def field_ref(self, node: Node, name: object) -> FieldRef:
        if not isinstance(name, str) or name not in self.fields:
            known = ", ".join(sorted(self.fields))
            raise self.fail(node, f"unknown field {name!r} (known: {known})")
        return FieldRef(name)

    def text(self, node: Node, fields: dict[str, tuple[Node, Node]], key: str) -> str:
        if key not in fields:
            raise self.fail(node, f"missing {key!r}")
        value = self.scalar(fields[key][1], key)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(fields[key][1], f"{key!r} must be a non-empty name")
        return value.strip()

    def static_value(self, node: Node) -> Any:
        """A literal with its YAML type kept (see ``worker.core.static_values``)."""
        if not isinstance(node, ScalarNode):
            raise self.fail(node, "value must be a single value")
        try:
            return typed_value(node, self.constructor)
        except StaticValueError as problem:
            raise self.fail(node, f"value {problem}") from None

    def scalar(self, node: Node, what: str) -> Any:
        if not isinstance(node, ScalarNode):
            raise self.fail(node, f"{what} must be a single value")
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError:
            raise self.fail(node, f"{what} has an unsupported YAML tag {node.tag!r}") from None

    def keyed(self, node: MappingNode) -> dict[str, tuple[Node, Node]]:
        """The node's entries by key, with ``<<:`` merges applied (explicit keys win)."""
        entries: dict[str, tuple[Node, Node]] = {}
        merged: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for source in sources:
                    if not isinstance(source, MappingNode):
                        raise self.fail(source, "'<<' must merge a mapping")
                    for name, entry in self.keyed(source).items():
                        merged.setdefault(name, entry)
                continue
            key = self.scalar(key_node, "a key")
            if not isinstance(key, str):
                raise self.fail(key_node, "keys must be names")
            if key in entries:
                raise self.fail(key_node, f"duplicate key {key!r}")
            entries[key] = (key_node, value_node)
        return {**merged, **entries}
