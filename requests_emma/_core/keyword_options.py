"""Keyword-only options that say so: a positional argument too many gets the fix, by name.

:class:`KeywordOptions` is the base class of ``EmmaAuth`` and ``EmmaSession``.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import inspect
    from typing import Self  # typing.Self from Python 3.11

_CO_VARARGS = 0x04  # inspect.CO_VARARGS, without importing inspect with the package


class _InitSignature:
    """A class's ``__signature__``: its ``__init__``'s, without ``self``. Only on the class:
    an instance's signature is that of its ``__call__``."""

    def __get__(self, instance: object, owner: type) -> inspect.Signature:
        if instance is not None:
            raise AttributeError("__signature__")
        import inspect  # by the tools that ask, not with the package

        init = owner.__init__  # type: ignore[misc]
        parameters = list(inspect.signature(init).parameters.values())
        return inspect.Signature(parameters[1:])


class KeywordOptions:
    """A base class whose ``__new__`` refuses more positional arguments than the
    subclass's ``__init__`` takes, saying which options go by keyword.

    Python's own message ("takes from 1 to 3 positional arguments but 4 were given") names
    neither the options nor the fix. The check runs in ``__new__``, before ``__init__``
    binds the arguments, and on a base class, so that ``inspect.signature``, ``help()`` and
    type checkers still show the subclass's ``__init__`` (Sphinx, which looks at ``__new__``
    first, reads the class's ``__signature__``). Its frame is gone before ``__init__`` runs,
    and it drops the arguments before it raises: any may be the secret.
    """

    __signature__ = _InitSignature()

    def __new__(cls, *args: object, **kwargs: object) -> Self:
        init = getattr(cls.__init__, "__code__", None)
        if init is not None and len(args) >= init.co_argcount and not init.co_flags & _CO_VARARGS:
            given = len(args)
            del args, kwargs
            raise TypeError(_positional_message(cls.__name__, init, given))
        return super().__new__(cls)


def _positional_message(name: str, init: types.CodeType, given: int) -> str:
    positional = init.co_varnames[1 : init.co_argcount]  # after self
    keywords = init.co_varnames[init.co_argcount : init.co_argcount + init.co_kwonlyargcount]
    if not positional:
        takes = "takes no positional arguments"
    elif len(positional) == 1:
        takes = f"takes {positional[0]} as its only positional argument"
    else:
        takes = f"takes {' and '.join(positional)} as positional arguments"
    options = f"{keywords[0]}=..." if keywords else "the options"
    if len(keywords) > 1:
        options += f" and the other options ({', '.join(keywords[1:])})"
    return f"{name}() {takes}, but {given} were given; pass {options} by keyword"
