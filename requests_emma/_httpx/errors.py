"""The library's errors as httpx (or httpx2) code expects them: each also an ``HTTPError``
of that module.

An ``EmmaHttpxAuth`` (``EmmaHttpx2Auth``) raises these instead of the plain classes, so that a
failed token call is caught by ``except httpx.HTTPError`` (``httpx2.HTTPError``) as well as by
the library's own classes (and by ``except requests.RequestException``, their root). Each
mirrors one class of ``requests_emma._errors``: same message, same fields, the same cause.
"""

from __future__ import annotations

from types import ModuleType

from .._errors import CredentialsError, EmmaAuthError, TokenRequestError, TokenResponseError

_CLASSES = (EmmaAuthError, CredentialsError, TokenRequestError, TokenResponseError)
#: The mirror classes, made once per HTTP module: ``(module name, class) -> mirror``.
_MIRRORS: dict[tuple[str, type[EmmaAuthError]], type[EmmaAuthError]] = {}


def mirror_class(http: ModuleType, cls: type[EmmaAuthError]) -> type[EmmaAuthError]:
    """The class that is both ``cls`` and ``http.HTTPError`` (``HttpxCredentialsError``)."""
    key = (http.__name__, cls)
    mirror = _MIRRORS.get(key)
    if mirror is None:
        name = http.__name__.capitalize() + cls.__name__
        doc = f":class:`~requests_emma.{cls.__name__}`, and an ``{http.__name__}.HTTPError``."
        mirror = _MIRRORS[key] = type(name, (cls, http.HTTPError), {"__doc__": doc})
        mirror.__module__ = "requests_emma." + http.__name__
    return mirror


def mirrored(http: ModuleType, error: EmmaAuthError) -> EmmaAuthError:
    """``error`` as its ``http`` mirror: a new exception with its message and fields (the
    caller raises it ``from`` the original's cause)."""
    if isinstance(error, http.HTTPError):
        return error  # type: ignore[no-any-return]  # both, checked
    cls = next(cls for cls in reversed(_CLASSES) if isinstance(error, cls))
    mirror = mirror_class(http, cls)
    twin = mirror.__new__(mirror, *error.args)
    twin.args = error.args
    fields = dict(error.__dict__)
    fields.pop("request", None)  # httpx.HTTPError's request is a property over _request
    twin.__dict__.update(fields)
    twin.__dict__["_request"] = None  # no request: it would carry the client secret
    return twin
