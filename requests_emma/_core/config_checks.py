"""Reading and checking configuration: the environment, the base URL, durations.

Also the two guards of construction: :class:`Secret`, the wrapper that keeps the client
secret out of every frame a traceback shows, and :class:`KeywordOptions`, the base class
that answers a positional argument where a keyword is needed with what to pass instead.
"""

from __future__ import annotations

import ipaddress
import math
import os
import types
import urllib.parse
from typing import TYPE_CHECKING

import requests

from .._errors import CredentialsError

if TYPE_CHECKING:
    import inspect

    from typing_extensions import Self  # typing.Self from Python 3.11

DEFAULT_BASE_URL = "https://api.emma.ms/external"
CLIENT_ID_VAR = "EMMA_CLIENT_ID"
CLIENT_SECRET_VAR = "EMMA_CLIENT_SECRET"
API_URL_VAR = "EMMA_API_URL"

Origin = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}
_CO_VARARGS = 0x04  # inspect.CO_VARARGS, without importing inspect with the package


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


def secret_or_none(value: str | None) -> Secret | None:
    return None if value is None else Secret(value)


def credentials(client_id: str | None, client_secret: Secret | None) -> tuple[str, Secret]:
    """The client ID and secret, from the arguments or else the environment.

    The secret arrives wrapped and the environment's is wrapped as it is read, so no frame
    here holds it in plain text for a traceback of the errors below to show.
    """
    if client_id is None:
        client_id = os.environ.get(CLIENT_ID_VAR) or None
    if client_secret is None:
        client_secret = secret_or_none(os.environ.get(CLIENT_SECRET_VAR) or None)
    missing = [
        f"{argument} (or {variable})"
        for argument, variable, given in (
            ("client_id", CLIENT_ID_VAR, bool(client_id)),
            ("client_secret", CLIENT_SECRET_VAR, bool(client_secret and client_secret.reveal())),
        )
        if not given
    ]
    if missing:
        raise CredentialsError(
            f"no emma client credentials: pass {' and '.join(missing)}; "
            "find them under Settings > Service Apps in your emma project"
        )
    assert client_id is not None and client_secret is not None
    for name, kind in (("client_id", type(client_id)), ("client_secret", client_secret.kind())):
        if kind is not str:
            raise CredentialsError(f"{name} must be a string, got {kind.__name__}")
    for name, is_text in (
        ("client_id", _is_utf8(client_id)),
        ("client_secret", _is_utf8(client_secret.reveal())),
    ):
        if not is_text:
            # Never the value: it may be the secret.
            raise CredentialsError(
                f"{name} is not valid text (it has bytes that are not UTF-8); "
                "set it to the value emma shows under Settings > Service Apps"
            )
    return client_id, client_secret


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Answered outside this handler: the error quotes the text, and would ride along
        # as the __context__ of an exception raised here.
        return False
    return True


def base_url(value: str | None) -> str:
    """The API base URL, from the argument or ``EMMA_API_URL``, checked, without trailing /.

    It must be https, unless its host is loopback (a local test server). A non-ASCII host
    is given in its IDNA (punycode) form, the one requests sends, so that ``origin()`` of the
    base URL and of each prepared request agree.
    """
    if value is None:
        value = os.environ.get(API_URL_VAR) or DEFAULT_BASE_URL
    if not isinstance(value, str):
        # Every bad option is a ValueError, so callers have one thing to catch.
        raise ValueError(f"base_url must be a string, got {type(value).__name__}")  # noqa: TRY004
    try:
        parts = urllib.parse.urlsplit(value.strip())
    except ValueError:  # unbalanced IPv6 brackets, or characters NFKC turns into / ? # @ :
        raise ValueError(
            "base_url is not a valid URL: its host has unbalanced [ ] or characters not "
            f"allowed in a host name; use a form such as {DEFAULT_BASE_URL!r}"
        ) from None
    if parts.username is not None or parts.password is not None:
        raise ValueError("base_url must not contain a user name or password")
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(
            f"base_url must be an absolute http(s) URL such as {DEFAULT_BASE_URL!r}, got {value!r}"
        )
    if _ambiguous(parts.netloc):
        raise ValueError(
            "base_url's host has a space, a backslash or a control character, which no host "
            f"name has; use a form such as {DEFAULT_BASE_URL!r}"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"base_url must not have a query or fragment, got {value!r}")
    try:
        _ = parts.port  # raises for a port out of range
    except ValueError:
        raise ValueError(f"base_url has an invalid port: {value!r}") from None
    if not parts.hostname.isascii():
        parts = parts._replace(netloc=_ascii_netloc(value.strip(), parts))
    if parts.scheme != "https" and not is_loopback(parts.hostname or ""):
        raise ValueError(
            f"base_url must use https (tokens would travel in clear text), got {value!r}; "
            "plain http is allowed only for a loopback host such as 127.0.0.1"
        )
    return urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/")))


def _ascii_netloc(value: str, parts: urllib.parse.SplitResult) -> str:
    """``parts``' netloc with the non-ASCII host in the IDNA form requests will send.

    requests' own URL preparation does the encoding (urllib3 IDNA-encodes each label, and
    requests' ``idna`` fallback covers what urllib3 leaves), so the host compared with each
    request is exactly the one requests connects to, and a host it could not send is refused
    here rather than at the first request. The port is kept as written.
    """
    prepared = requests.PreparedRequest()
    try:
        prepared.prepare_url(value, None)
        host = urllib.parse.urlsplit(str(prepared.url)).hostname or ""
    except requests.exceptions.InvalidURL:
        host = ""
    if not host or not host.isascii():
        raise ValueError(
            f"base_url host {parts.hostname!r} is not a valid internationalised domain name "
            "(IDNA), so requests could not send to it; check its spelling, or give the host "
            "in its ASCII form (xn--...)"
        )
    _, colon, port = parts.netloc.rpartition(":")
    return host + colon + port if colon else host


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def direct_proxies(url: str) -> dict[str, None] | None:
    """The ``proxies=`` mapping that makes requests connect to ``url`` directly if its host is
    loopback; ``None`` (keep the user's proxies) for any other host.

    A request sent with it never goes to loopback through a proxy: a proxy elsewhere cannot
    reach this host's loopback, and plain http to it would hand the proxy the client secret
    and the token. (Token calls and ``EmmaSession`` pass it; a request plain requests sends
    with an ``EmmaAuth`` does not, and goes where requests' proxy settings say.)
    Pass the result as it is, ``session.post(url, proxies=direct_proxies(url))``: requests
    adds the environment's proxies (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``) only under
    keys the per-request mapping leaves unset, lays the session's ``proxies`` beneath, then
    drops every key whose value is ``None``. A ``None`` under each key ``select_proxy`` looks
    at (``scheme://host``, ``scheme``, ``all://host``, ``all``) thus removes whichever layer
    set it. The mapping is new on each call, as requests adds to it in place.
    """
    try:
        host = urllib.parse.urlsplit(url).hostname
    except ValueError:
        return None
    if not host or not is_loopback(host):
        return None
    schemes = ("http", "https", "all")
    return {key: None for scheme in schemes for key in (scheme, f"{scheme}://{host}")}


def origin(url: str) -> Origin | None:
    """``(scheme, host, port)`` of a URL, with the default port filled in."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or _ambiguous(parts.netloc):
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def _ambiguous(netloc: str) -> bool:
    """Whether urllib3, which opens the connection, may read another host in ``netloc``.

    urllib3 ends the authority at a backslash (``https://evil.example\\@api.emma.ms/`` goes
    to evil.example); ``urlsplit`` does not. requests quotes both away in the URLs it
    prepares, so only a URL set by hand has them; such a URL is nobody's origin.
    """
    # Three scans in C: this runs for every request to another origin.
    return "\\" in netloc or " " in netloc or not netloc.isprintable()


def seconds(name: str, value: object) -> float:
    """A non-negative, finite number of seconds, or ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")
    return float(value)


def timeout(value: object) -> tuple[float, float]:
    """A requests-style timeout (seconds, or a (connect, read) pair), both parts positive."""
    pair = value if isinstance(value, tuple) else (value, value)
    if len(pair) != 2:
        raise ValueError(f"timeout must be seconds or a (connect, read) pair, got {value!r}")
    connect, read = (seconds("timeout", part) for part in pair)
    if connect == 0 or read == 0:
        raise ValueError(f"timeout must be positive, got {value!r}")
    return connect, read
