"""Dict indexes from identifier value to profile, so identity resolution stays O(1) when a
bulk import brings the sandbox to 100,000 profiles.

Endpoints in several modules write profile attributes in place (``record["attributes"] =
merged(...)``, ``profile["attributes"]["email"] = ...``). Rather than trust every writer,
present and future, to remember the index, profile records and their attribute dicts are
small dict subclasses that report identifier writes to the index themselves. Copies of
them (``copy.copy``, ``copy.deepcopy``, ``dict(...)``, ``{**...}``) are plain dicts, so a
copy handed to a test can never disturb the index.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

IDENTIFIERS = ("email", "phone_number", "external_id")


class IdentityIndex:
    """identifier name -> value -> ids of the profiles holding it, in creation order."""

    def __init__(self) -> None:
        self._ids: dict[str, dict[Any, list[str]]] = {name: {} for name in IDENTIFIERS}
        self._rank: dict[str, int] = {}

    def clear(self) -> None:
        for values in self._ids.values():
            values.clear()
        self._rank.clear()

    def register(self, profile_id: str) -> None:
        self._rank[profile_id] = len(self._rank)

    def ids(self, field: str, value: Any) -> list[str]:
        if value is None or field not in self._ids:
            return []
        return list(self._ids[field].get(value, ()))

    def move(self, profile_id: str, field: str, old: Any, new: Any) -> None:
        if old == new:
            return
        values = self._ids[field]
        if old is not None and old in values:
            holders = values[old]
            if profile_id in holders:
                holders.remove(profile_id)
            if not holders:
                del values[old]
        if new is not None:
            holders = values.setdefault(new, [])
            holders.append(profile_id)
            if len(holders) > 1:  # only legacy duplicates get here; keep creation order
                holders.sort(key=lambda pid: self._rank.get(pid, 0))


class TrackedAttributes(dict[str, Any]):
    """A profile's attributes; every change to an identifier updates the index."""

    __slots__ = ("_index", "_profile_id")

    def __init__(self, index: IdentityIndex, profile_id: str,
                 values: Mapping[str, Any]) -> None:
        super().__init__(values)
        self._index, self._profile_id = index, profile_id
        for name in IDENTIFIERS:
            index.move(profile_id, name, None, self.get(name))

    def detach(self) -> None:
        """Drop this dict's identifiers from the index (it is being replaced)."""
        for name in IDENTIFIERS:
            self._index.move(self._profile_id, name, self.get(name), None)

    def __setitem__(self, key: str, value: Any) -> None:
        if key in IDENTIFIERS:
            self._index.move(self._profile_id, key, self.get(key), value)
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        if key in IDENTIFIERS:
            self._index.move(self._profile_id, key, self.get(key), None)
        super().__delitem__(key)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def pop(self, key: str, *default: Any) -> Any:
        if key in IDENTIFIERS and key in self:
            self._index.move(self._profile_id, key, self[key], None)
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, Any]:
        key, value = super().popitem()
        if key in IDENTIFIERS:
            self._index.move(self._profile_id, key, value, None)
        return key, value

    def clear(self) -> None:
        self.detach()
        super().clear()

    def __ior__(self, other: Any) -> TrackedAttributes:  # type: ignore[override,misc]
        self.update(other)
        return self

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return {key: copy.deepcopy(value, memo) for key, value in self.items()}

    def __reduce__(self) -> Any:
        return (dict, (dict(self),))


class ProfileRecord(dict[str, Any]):
    """``{"id", "attributes", "subscriptions"}``; assigning ``attributes`` re-indexes."""

    __slots__ = ("_index",)

    def __init__(self, index: IdentityIndex, profile_id: str, attributes: Mapping[str, Any],
                 subscriptions: dict[str, Any]) -> None:
        super().__init__(id=profile_id, subscriptions=subscriptions)
        self._index = index
        self["attributes"] = attributes

    def __setitem__(self, key: str, value: Any) -> None:
        if key == "attributes":
            current = self.get("attributes")
            if isinstance(current, TrackedAttributes):
                current.detach()
            value = TrackedAttributes(self._index, self["id"], value)
        super().__setitem__(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return {key: copy.deepcopy(value, memo) for key, value in self.items()}

    def __reduce__(self) -> Any:
        return (dict, (dict(self),))


def candidates(index: IdentityIndex, criteria: Mapping[str, Any]) -> Iterable[str] | None:
    """Ids that may match ``criteria`` when it names an identifier, else None (scan all)."""
    for name in IDENTIFIERS:
        if criteria.get(name) is not None:
            return index.ids(name, criteria[name])
    return None
