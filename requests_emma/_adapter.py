"""What every client adapter is, besides its HTTP stack's entry points: a shell over one
:class:`~._source.source.TokenSource` and the clients its token calls go through.

An adapter (``EmmaAuth``, ``EmmaHttpxAuth``, ``EmmaHttpx2Auth``, ``EmmaAiohttpMiddleware``)
names its clients in :attr:`Adapter.clients` (``session=``, ``client=``...); this base
checks them, and gives every adapter the same ``sharing()``, ``base_url``, ``status()``,
``repr`` and pickling. A stack whose code catches its own exception classes gets the
library's errors as :func:`stack_error` makes them: also of that class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypedDict

from ._errors import CredentialsError, EmmaAuthError, TokenRequestError, TokenResponseError

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

    from ._caches.protocol import TokenCache
    from ._core.retry_policy import RetryPolicy
    from ._core.token import Token
    from ._core.token_status import TokenStatus
    from ._source import TokenSource


class TokenOptions(TypedDict, total=False):
    """The token options every client adapter takes by keyword, as
    :class:`~requests_emma.EmmaAuth` documents them: ``base_url``, ``refresh_margin``,
    ``timeout``, ``on_token``, ``retry`` and ``token_cache``."""

    base_url: str | None
    refresh_margin: float | None
    timeout: float | tuple[float, float]
    on_token: Callable[[Token], object] | None
    retry: RetryPolicy | None
    token_cache: TokenCache | None


class Adapter:
    """The part of a client adapter that is the same for every HTTP stack."""

    #: The clients an adapter takes for its token calls: keyword, the class it must be, and
    #: how an error names that class ("a requests.Session").
    clients: ClassVar[tuple[tuple[str, type, str], ...]] = ()
    #: Whether those clients pickle (a ``requests.Session`` does; an event loop's do not).
    clients_pickle: ClassVar[bool] = False
    _token_source: TokenSource
    _clients: dict[str, Any]

    def _attach(self, source: TokenSource, clients: dict[str, Any]) -> None:
        """Wrap ``source``, with token calls over ``clients`` (checked here)."""
        for name, kind, described in self.clients:
            client = clients[name]
            if client is not None and not isinstance(client, kind):
                raise ValueError(f"{name} must be {described}, got {type(client).__name__}")
        self._token_source = source
        self._clients = clients

    def _new_source(self, client_id: str | None, secret: Any, options: Any) -> TokenSource:
        """The source of a new adapter, an unknown option named against the adapter (not the
        source, which users never see)."""
        unknown = sorted(options.keys() - TokenOptions.__optional_keys__)
        if unknown:
            raise TypeError(
                f"{type(self).__name__}() got an unexpected keyword argument {unknown[0]!r}"
            )
        from ._source import TokenSource

        return TokenSource(client_id, secret, **options)

    @classmethod
    def sharing(cls, auth: object, **clients: Any) -> Self:
        """An auth of this class backed by ``auth``'s token (any of the library's auths):
        one token, one renewal at a time, whichever client, thread or event loop needs it
        first. ``clients``: as the constructor takes them (``session=``, ``client=``...)."""
        from ._source import source_of  # the token machinery loads at the first use

        shell = cls.__new__(cls)
        shell._attach(source_of(auth), {name: clients.pop(name, None) for name, *_ in cls.clients})
        if clients:
            raise TypeError(f"{cls.__name__}.sharing() got an unexpected keyword {min(clients)!r}")
        return shell

    @property
    def base_url(self) -> str:
        """The API base URL, without a trailing slash."""
        return self._token_source.base_url

    def status(self) -> TokenStatus:
        """The token's state now, for health checks: a :class:`~requests_emma.TokenStatus`
        (no secrets). It makes no network call and does not wait for a renewal in flight."""
        return self._token_source.status()

    def __repr__(self) -> str:
        # Of any instance, one whose __init__ raised halfway included: a traceback shown
        # with its locals reprs the ``self`` of that __init__.
        source = getattr(self, "_token_source", None)
        if source is None:
            return f"{type(self).__name__}(<not fully constructed>)"
        return f"{type(self).__name__}(client_id={source.client_id!r}, base_url={self.base_url!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # The source's configuration without the tokens (a worker process gets its own).
        clients = self._clients
        if not self.clients_pickle and any(client is not None for client in clients.values()):
            given = " or ".join(f"{name}=" for name in clients)
            raise TypeError(
                f"an {type(self).__name__} with {given} cannot be pickled (its clients are "
                "bound to their event loop or sockets); make one in the worker process instead"
            )
        return (_restore, (type(self), self._token_source, clients))


def _restore(cls: type[Adapter], source: TokenSource, clients: dict[str, Any]) -> Adapter:
    shell = cls.__new__(cls)
    shell._attach(source, clients)
    return shell


#: The library's error classes, most derived last; and each mirror made, by (base, class).
_CLASSES = (EmmaAuthError, CredentialsError, TokenRequestError, TokenResponseError)
_MIRRORS: dict[tuple[type[Exception], type[EmmaAuthError]], type[EmmaAuthError]] = {}


def stack_error(error: EmmaAuthError, base: type[Exception], prefix: str) -> EmmaAuthError:
    """``error`` as a new exception of its class and of ``base`` too (``httpx.HTTPError``,
    ``aiohttp.ClientError``), named ``prefix`` + its class (``HttpxCredentialsError``): same
    message, same fields; the caller raises it ``from`` the original's cause."""
    if isinstance(error, base):
        return error
    cls = next(cls for cls in reversed(_CLASSES) if isinstance(error, cls))
    mirror = _MIRRORS.get((base, cls))
    if mirror is None:
        doc = f":class:`~requests_emma.{cls.__name__}`, and a ``{prefix.lower()}.{base.__name__}``."

        def reduce(self: EmmaAuthError, cls: type[EmmaAuthError] = cls) -> tuple[Any, ...]:
            return (_mirror_again, (base, prefix, cls, self.args, self.__dict__))

        mirror = type(prefix + cls.__name__, (cls, base), {"__doc__": doc, "__reduce__": reduce})
        mirror.__module__ = "requests_emma." + prefix.lower()
        _MIRRORS[base, cls] = mirror
    twin = mirror.__new__(mirror, *error.args)
    twin.args = error.args
    twin.__dict__.update(error.__dict__)
    if isinstance(getattr(base, "request", None), property):  # httpx's, over _request
        twin.__dict__["_request"] = None  # no request: it would carry the secret
    return twin


def _mirror_again(
    base: type[Exception], prefix: str, cls: type[EmmaAuthError], args: Any, fields: Any
) -> EmmaAuthError:
    """A mirror unpickled: made again, as the class is made at run time."""
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(fields)
    return stack_error(error, base, prefix)
