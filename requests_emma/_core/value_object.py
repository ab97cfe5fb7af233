"""Immutable value objects without ``dataclasses``.

``dataclasses`` imports ``inspect`` (and with it ``ast`` and ``dis``), and builds each class's
methods with ``exec`` at import: together most of what importing this package cost beyond
``requests`` itself. A :class:`Value` keeps what the value objects need from a frozen
dataclass: fields in ``__slots__``, equality and hashing by value, no attribute set after
construction, ``copy.replace()`` (Python 3.13+) and pickling.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from typing import Self  # typing.Self from Python 3.11

_V = TypeVar("_V", bound="Value")


class Value:
    """Base of the value objects. Subclasses list their fields in ``__slots__`` and set them
    in ``__init__`` through :meth:`_set`."""

    __slots__ = ()

    def _set(self, **fields: Any) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def _fields(self) -> dict[str, Any]:
        names = _field_names(type(self))  # type: ignore[arg-type]  # classes hash by identity
        return {name: getattr(self, name) for name in names}

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(tuple(self._fields().values()))

    def __replace__(self, **changes: Any) -> Self:
        return type(self)(**{**self._fields(), **changes})

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self._fields()))


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    """The slots of ``cls`` and its bases, base fields first (a subclass may add fields)."""
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        slots = klass.__dict__.get("__slots__", ())
        names += [slots] if isinstance(slots, str) else list(slots)
    return tuple(names)


def _rebuild(cls: type[_V], fields: dict[str, Any]) -> _V:
    return cls(**fields)
