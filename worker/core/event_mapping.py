"""The ``events`` section of the mapping file: how a transaction becomes event properties.

Format (the bundled ``default_mapping.yaml`` has a complete example)::

    events:
      placed_order:           # over the transaction: Id, TransactionNumber, Lines, Total, ...
        - {type: field, source: TransactionNumber, destination: OrderId}
        - {type: formula, formula: LineValues, args: [Lines, {value: Description}],
           destination: ItemNames}
      ordered_product:        # over one line: Sku, Description, Qty, ...; Parent.X reads
        - {type: field, source: Sku, destination: SKU}   # the transaction's field X
        - {type: field, source: Parent.TransactionNumber, destination: OrderId}

Mappings have the same three types as the profile collections; every destination is an
event property name. Both lists are optional; a mapping file without an ``events`` section
uses the bundled one.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from yaml.nodes import MappingNode, Node, SequenceNode

from worker.core.mapping_rule import Mapping
from worker.core.transaction_fields import ORDERED_PRODUCT_FIELDS, TRANSACTION_FIELDS


class CollectionLoader(Protocol):
    """What parsing the events section needs of the mapping file's loader
    (worker/core/mapping_file.py), which calls ``parse_events`` with itself."""

    def fail(self, node: Node | None, problem: str) -> Exception: ...

    def keyed(self, node: MappingNode) -> dict[str, tuple[Node, Node]]: ...

    def reading(self, fields: dict[str, str]) -> AbstractContextManager[None]: ...

    def collection(self, root: Node, sections: dict[str, tuple[Node, Node]], name: str
                   ) -> tuple[Mapping, ...]: ...

EVENTS = "events"
PLACED_ORDER = "placed_order"
ORDERED_PRODUCT = "ordered_product"
_FIELDS = {PLACED_ORDER: TRANSACTION_FIELDS, ORDERED_PRODUCT: ORDERED_PRODUCT_FIELDS}


@dataclass(frozen=True)
class EventCollections:
    placed_order: tuple[Mapping, ...] = ()
    ordered_product: tuple[Mapping, ...] = ()


def parse_events(loader: CollectionLoader, node: Node) -> EventCollections:
    if not isinstance(node, MappingNode):
        raise loader.fail(node, f"{EVENTS!r} must be a mapping with "
                                f"{PLACED_ORDER!r} and {ORDERED_PRODUCT!r} lists")
    sections = loader.keyed(node)
    for key, (key_node, _) in sections.items():
        if key not in _FIELDS:
            raise loader.fail(key_node, f"unknown events collection {key!r} "
                                        f"(known: {', '.join(sorted(_FIELDS))})")
    parsed: dict[str, tuple[Mapping, ...]] = {}
    for name, fields in _FIELDS.items():
        if name not in sections:
            parsed[name] = ()
            continue
        if not isinstance(sections[name][1], SequenceNode):
            raise loader.fail(sections[name][1], f"{name!r} must be a list of mappings")
        with loader.reading(fields):
            parsed[name] = loader.collection(node, sections, name)
    return EventCollections(**parsed)
