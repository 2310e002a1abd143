"""One mapping of a collection: a static value, a customer field or a formula, and where its
value goes (worker/core/mapping_file.py reads them from the YAML file)."""

from __future__ import annotations

from dataclasses import dataclass

from worker.core.formulas import Expr


@dataclass(frozen=True)
class Mapping:
    kind: str  # "static" | "field" | "formula"
    destination: str
    expression: Expr
    line: int  # 1-based line in the mapping file, for messages
