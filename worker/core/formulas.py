"""The formula registry: named, safe functions a mapping may call (never ``eval``).

A formula is a plain Python function taking the evaluation environment and its evaluated
arguments. Register one with ``@formula("Name", arity=n)``; its docstring's first line is the
one-line description. ``check`` lets a formula reject literal arguments when the mapping file
is loaded, so mistakes surface at start-up rather than on the first customer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker.core import reasons
from worker.core.address import country_alpha2
from worker.core.conditions import parse_condition
from worker.core.errors import FieldError
from worker.core.fieldnames import ANY_ITEM_FIELDS, CUSTOMER_FIELDS, LIST_ITEM_FIELDS, is_true
from worker.core.fieldnames import json_key as field_key
from worker.core.model import MappingContext
from worker.core.phone import format_phone


@dataclass
class FormulaEnv:
    """What a formula may look at while one customer is mapped."""

    customer: dict[str, Any]
    context: MappingContext
    problems: list[FieldError] = field(default_factory=list)


# --- expressions: what a mapping's value is computed from -----------------------------------


@dataclass(frozen=True)
class FieldRef:
    name: str  # PascalCase customer field


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Call:
    formula: Formula
    args: tuple[Expr, ...]


Expr = FieldRef | Literal | Call


def evaluate(expr: Expr, env: FormulaEnv) -> Any:
    if isinstance(expr, Literal):
        return expr.value
    if isinstance(expr, FieldRef):
        return customer_field(env.customer, expr.name)
    return expr.formula.func(env, *(evaluate(arg, env) for arg in expr.args))


def customer_field(customer: dict[str, Any], name: str) -> Any:
    value = customer.get(CUSTOMER_FIELDS[name])
    if name == "Id" and value is not None and not isinstance(value, bool):
        # iPaaS.com sends the id as a number or a string; downstream it is always a string.
        value = str(value).strip() or None
    return value


# --- the registry ---------------------------------------------------------------------------

ArgCheck = Callable[[tuple[Expr, ...]], "str | None"]


@dataclass(frozen=True)
class Formula:
    name: str
    func: Callable[..., Any]
    min_args: int
    max_args: int | None  # None: any number
    doc: str
    check: ArgCheck | None = None

    def arity_text(self) -> str:
        if self.max_args == self.min_args:
            return str(self.min_args)
        if self.max_args is None:
            return f"at least {self.min_args}"
        return f"{self.min_args} to {self.max_args}"


FORMULAS: dict[str, Formula] = {}


def formula(
    name: str, *, arity: int | tuple[int, int | None], check: ArgCheck | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    low, high = (arity, arity) if isinstance(arity, int) else arity

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        doc = (func.__doc__ or "").strip().splitlines()[0] if func.__doc__ else ""
        FORMULAS[name] = Formula(name, func, low, high, doc, check)
        return func

    return register


def _first_match(items: object, condition: object) -> Any:
    if not isinstance(items, list) or not isinstance(condition, str):
        return None
    parsed = parse_condition(condition)
    return next((item for item in items if parsed.matches(item)), None)


def _item_value(item: object, name: object) -> Any:
    if not isinstance(item, dict) or not isinstance(name, str):
        return None
    return item.get(field_key(name))


# --- load-time argument checks --------------------------------------------------------------


def _item_fields(list_arg: Expr) -> dict[str, str]:
    if isinstance(list_arg, FieldRef):
        return LIST_ITEM_FIELDS.get(list_arg.name, ANY_ITEM_FIELDS)
    return ANY_ITEM_FIELDS


def _check_condition(list_arg: Expr, condition: Expr) -> str | None:
    if not isinstance(condition, Literal):
        return None
    if not isinstance(condition.value, str):
        return "the condition must be a string such as 'IsPrimaryBilling == true'"
    try:
        parsed = parse_condition(condition.value)
    except ValueError as error:
        return str(error)
    return _check_item_field(list_arg, Literal(parsed.field))


def _check_item_field(list_arg: Expr, name: Expr) -> str | None:
    if not isinstance(name, Literal):
        return None
    known = _item_fields(list_arg)
    if name.value not in known:
        return f"unknown field {name.value!r} (known: {', '.join(sorted(known))})"
    return None


def _check_first_match(args: tuple[Expr, ...]) -> str | None:
    return _check_condition(args[0], args[1])


def _check_field_from_first_match(args: tuple[Expr, ...]) -> str | None:
    return _check_condition(args[0], args[1]) or _check_item_field(args[0], args[2])


def _check_get_value(args: tuple[Expr, ...]) -> str | None:
    item = args[0]
    list_arg = item.args[0] if isinstance(item, Call) and item.args else item
    return _check_item_field(list_arg, args[1])


# --- the formulas ---------------------------------------------------------------------------


@formula("GetExternalIdAsync", arity=0)
def get_external_id(env: FormulaEnv) -> str | None:
    """The Klaviyo profile id already linked to this customer, or nothing."""
    return env.context.linked_profile_id


@formula("GetKlaviyoFormattedPhoneNumber", arity=1)
def klaviyo_phone(env: FormulaEnv, value: object) -> str | None:
    """E.164 phone for the primary billing country (else the default region)."""
    result = format_phone(value, phone_region(env.customer, env.context))
    if result.invalid:
        env.problems.append(
            FieldError("PhoneNumber", reasons.INVALID_PHONE, "not a valid phone number")
        )
    return result.e164


def phone_region(customer: dict[str, Any], context: MappingContext) -> str:
    billing = primary_billing_address(customer)
    region = country_alpha2(billing.get("country")) if billing else None
    return region or context.default_region


def primary_billing_address(customer: dict[str, Any]) -> dict[str, Any] | None:
    addresses = customer.get("addresses")
    if not isinstance(addresses, list):
        return None
    return next(
        (a for a in addresses if isinstance(a, dict) and is_true(a.get("is_primary_billing"))),
        None,
    )


@formula("FieldFromFirstMatch", arity=3, check=_check_field_from_first_match)
def field_from_first_match(env: FormulaEnv, items: object, condition: object, name: object) -> Any:
    """One field of the first list item matching a condition."""
    return _item_value(_first_match(items, condition), name)


@formula("FirstMatch", arity=2, check=_check_first_match)
def first_match(env: FormulaEnv, items: object, condition: object) -> Any:
    """The first list item matching a condition such as 'IsPrimaryBilling == true'."""
    return _first_match(items, condition)


@formula("GetValue", arity=2, check=_check_get_value)
def get_value(env: FormulaEnv, item: object, name: object) -> Any:
    """One field of an item (for example the result of FirstMatch)."""
    return _item_value(item, name)


@formula("GetCustomFieldValue", arity=(1, 2))
def get_custom_field_value(env: FormulaEnv, *args: object) -> Any:
    """The value of the customer's custom field with this name (CustomFields may lead)."""
    name = args[-1]
    fields = args[0] if len(args) == 2 else env.customer.get("custom_fields")
    if not isinstance(name, str) or not isinstance(fields, list):
        return None
    wanted = name.strip().lower()
    for item in fields:
        if isinstance(item, dict) and _name_of(item).strip().lower() == wanted:
            return item.get("value")
    return None


def _name_of(custom_field: dict[str, Any]) -> str:
    return str(custom_field.get("custom_field_name") or "")


@formula("Coalesce", arity=(1, None))
def coalesce(env: FormulaEnv, *values: object) -> Any:
    """The first value that is neither null nor empty."""
    return next((value for value in values if not is_empty(value)), None)


@formula("Trim", arity=1)
def trim(env: FormulaEnv, value: object) -> str | None:
    """The text without surrounding whitespace."""
    return None if value is None else str(value).strip()


@formula("Lower", arity=1)
def lower(env: FormulaEnv, value: object) -> str | None:
    """The text in lower case."""
    return None if value is None else str(value).lower()


@formula("Upper", arity=1)
def upper(env: FormulaEnv, value: object) -> str | None:
    """The text in upper case."""
    return None if value is None else str(value).upper()


def is_empty(value: object) -> bool:
    """Null and blank text count as "no value": we never send them to Klaviyo."""
    return value is None or (isinstance(value, str) and not value.strip())
