"""Subscription and list directives: ``SubscribeProfile``, ``LIST_{name}``, ``UCLIST_{name}``.

Values must say true or false unambiguously (any case, strings or JSON booleans): guessing
about consent is worse than rejecting the step, so anything else is ``invalid_flag``.
"""

from __future__ import annotations

from worker.core import reasons
from worker.core.errors import FieldError
from worker.core.model import (
    LIST_PREFIX,
    SUBSCRIBE_DIRECTIVE,
    UCLIST_PREFIX,
    Directives,
    ListDirective,
    MappedCustomer,
)


def parse_flag(value: object) -> bool | None:
    """True or False for a clear yes/no value, None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.strip().lower())
    return None


def parse_directives(mapped: MappedCustomer) -> tuple[Directives, list[FieldError]]:
    directives = Directives()
    errors: list[FieldError] = []
    for destination in sorted(mapped.directives):
        flag = parse_flag(mapped.directives[destination])
        if flag is None:
            errors.append(FieldError(destination, reasons.INVALID_FLAG, "expected true or false"))
        elif destination == SUBSCRIBE_DIRECTIVE:
            directives.subscribe_profile = flag
        elif destination.startswith(UCLIST_PREFIX):
            name = destination.removeprefix(UCLIST_PREFIX)
            directives.lists.append(ListDirective(name, consented=True, member=flag))
        elif destination.startswith(LIST_PREFIX):
            name = destination.removeprefix(LIST_PREFIX)
            directives.lists.append(ListDirective(name, consented=False, member=flag))
    directives.lists.sort(key=lambda item: (item.name, item.consented))
    return directives, errors
