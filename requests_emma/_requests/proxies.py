"""Loopback goes direct: the ``proxies=`` mapping that keeps a proxy out of a local call."""

from __future__ import annotations

from .._core.urls import is_loopback, origin


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
    found = origin(url)  # None for a URL that is not http(s) or that urllib3 may read otherwise
    if found is None or not is_loopback(found[1]):
        return None
    schemes = ("http", "https", "all")
    return {key: None for scheme in schemes for key in (scheme, f"{scheme}://{found[1]}")}
