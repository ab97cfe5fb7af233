"""Reading and checking configuration: the environment, the base URL, durations."""

from __future__ import annotations

import ipaddress
import math
import os
import urllib.parse

import requests

from ._errors import CredentialsError

DEFAULT_BASE_URL = "https://api.emma.ms/external"
CLIENT_ID_VAR = "EMMA_CLIENT_ID"
CLIENT_SECRET_VAR = "EMMA_CLIENT_SECRET"
API_URL_VAR = "EMMA_API_URL"

Origin = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}


class Secret:
    """A string that shows as ``'***'`` in reprs, and so in tracebacks that list locals.

    ``reveal()`` gives the value, at the last moment it is needed.
    """

    def __init__(self, value: str) -> None:
        self._value = value

    def __repr__(self) -> str:
        return "'***'"

    def reveal(self) -> str:
        return self._value


def secret_or_none(value: str | None) -> Secret | None:
    return None if value is None else Secret(value)


def credentials(client_id: str | None, client_secret: str | None) -> tuple[str, Secret]:
    """The client ID and secret, from the arguments or else the environment."""
    if client_id is None:
        client_id = os.environ.get(CLIENT_ID_VAR) or None
    if client_secret is None:
        client_secret = os.environ.get(CLIENT_SECRET_VAR) or None
    missing = [
        f"{argument} (or {variable})"
        for argument, variable, value in (
            ("client_id", CLIENT_ID_VAR, client_id),
            ("client_secret", CLIENT_SECRET_VAR, client_secret),
        )
        if not value
    ]
    if missing:
        raise CredentialsError(
            f"no emma client credentials: pass {' and '.join(missing)}; "
            "find them under Settings > Service Apps in your emma project"
        )
    for name, value in (("client_id", client_id), ("client_secret", client_secret)):
        if not isinstance(value, str):
            raise CredentialsError(f"{name} must be a string, got {type(value).__name__}")
    for name, value in (("client_id", client_id), ("client_secret", client_secret)):
        if not _is_utf8(str(value)):
            # Never the value: it may be the secret.
            raise CredentialsError(
                f"{name} is not valid text (it has bytes that are not UTF-8); "
                "set it to the value emma shows under Settings > Service Apps"
            )
    assert client_id is not None and client_secret is not None
    return client_id, Secret(client_secret)


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

    Loopback traffic never goes through a proxy: a proxy elsewhere cannot reach this host's
    loopback, and plain http to it would hand the proxy the client secret and the token.
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
