"""The client secret (and every token) as a value that no traceback shows.

A traceback that lists locals (pytest's ``--showlocals``, Sentry, rich) prints each frame's
variables with ``repr``. :class:`Secret` shows as ``'***'`` there; its ``reveal()`` gives the
value at the last moment it is needed, passed straight on as an argument, never bound to a
local, so that no frame holds it in plain text.
"""

from __future__ import annotations


class Secret:
    """A string that shows as ``'***'`` in reprs, and so in tracebacks that list locals.

    ``reveal()`` gives the value, at the last moment it is needed: passed straight on as
    an argument, never bound to a local of ours, so that no frame a traceback shows holds
    it in plain text. Values from callers are wrapped as they arrive, before they are
    checked, so a value of the wrong type is wrapped too.
    """

    def __init__(self, value: str) -> None:
        self._value = value

    def __repr__(self) -> str:
        return "'***'"

    def reveal(self) -> str:
        return self._value

    def kind(self) -> type:
        """The type of the value, for an error that must not show the value itself."""
        return type(self._value)


def secret_or_none(value: str | Secret | None) -> Secret | None:
    """``value`` wrapped (once: a :class:`Secret` is passed on as it is), or ``None``."""
    return value if value is None or isinstance(value, Secret) else Secret(value)
