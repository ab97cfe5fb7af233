"""URLs and origins: the checked base URL, the origin a URL is on, and how to write one.

The token goes only to the base URL's origin, ``(scheme, host, port)``. :func:`origin` is
the one test of "same origin"; :func:`origin_prefixes` writes the prefixes requests gives
the URLs on an origin, so that the common case is a string comparison; :func:`host_in_url`
writes a host as a URL (or a ``host:port``) has it, an IPv6 address in brackets.

A non-ASCII host is written as requests itself writes it in the URLs it prepares (asked of
requests, ``_prepared_host.py``, so the two agree whatever requests' version), and a host
requests could not send is refused at construction. So the origin of the base URL and of
each prepared request agree.
"""

from __future__ import annotations

import ipaddress
import os
import urllib.parse

from .credentials import API_URL_VAR

DEFAULT_BASE_URL = "https://api.emma.ms/external"
DEFAULT_PORTS = {"http": 80, "https": 443}


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
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
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
        # Written as requests writes it in the URLs it prepares (IDNA, percent escapes as it
        # treats them): asked of requests itself, so the two agree whatever its version. The
        # port is kept as written. A host requests could not send is refused here, rather
        # than at the first request.
        from .._prepared_host import prepared_host  # loads requests: for a non-ASCII host only

        host = prepared_host(parts.scheme, parts.hostname)
        if host is None:
            raise ValueError(
                f"base_url host {parts.hostname!r} is not a valid internationalised domain "
                "name (IDNA), so requests could not send to it; check its spelling, or give the "
                "host in its ASCII form (xn--...)"
            )
        _, colon, port = parts.netloc.rpartition(":")
        parts = parts._replace(netloc=host + colon + port if colon else host)
    if parts.scheme != "https" and not is_loopback(parts.hostname or ""):
        raise ValueError(
            f"base_url must use https (tokens would travel in clear text), got {value!r}; "
            "plain http is allowed only for a loopback host such as 127.0.0.1"
        )
    return urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/")))


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name, not an address
        return host.lower() == "localhost"


def origin(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of a URL, with the default port filled in."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    # urlsplit gives the scheme in lower case already.
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or _ambiguous(parts.netloc):
        return None
    return parts.scheme, parts.hostname.lower(), port or DEFAULT_PORTS[parts.scheme]


def host_in_url(host: str) -> str:
    """``host`` as a URL's authority writes it: an IPv6 address (it has a ``:``) in brackets."""
    return f"[{host}]" if ":" in host else host


def origin_text(found: tuple[str, str, int]) -> str:
    """``scheme://host:port`` of an origin: the one way the library writes one."""
    scheme, host, port = found
    return f"{scheme}://{host_in_url(host)}:{port}"


def origin_prefixes(url: str) -> list[str]:
    """The prefixes ``scheme://host[:port]/`` of URLs on ``url``'s origin, as requests writes
    them: first the one requests prepares (no port if it is the default), then, for a default
    port, the one with it written out. Each is one :func:`origin` takes for that origin.
    """
    found = origin(url)
    assert found is not None  # a checked base URL
    scheme, host, port = found
    short = [f"{scheme}://{host_in_url(host)}/"] if port == DEFAULT_PORTS[scheme] else []
    return [prefix for prefix in [*short, origin_text(found) + "/"] if origin(prefix) == found]


def _ambiguous(netloc: str) -> bool:
    """Whether urllib3, which opens the connection, may read another host in ``netloc``.

    urllib3 ends the authority at a backslash (``https://evil.example\\@api.emma.ms/`` goes
    to evil.example); ``urlsplit`` does not. requests quotes both away in the URLs it
    prepares, so only a URL set by hand has them; such a URL is nobody's origin.
    """
    # Three scans in C: this runs for every request to another origin.
    return "\\" in netloc or " " in netloc or not netloc.isprintable()
