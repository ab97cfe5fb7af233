"""The host requests writes in the URLs it prepares, asked of requests itself."""

from __future__ import annotations

import urllib.parse

import requests


def prepared_host(scheme: str, host: str) -> str | None:
    """``host`` as requests puts it in a prepared request's URL (IDNA, percent escapes as
    requests treats them), or ``None`` where requests refuses to send to it."""
    try:
        url = requests.Request("GET", f"{scheme}://{host}/").prepare().url
    except ValueError:  # requests' InvalidURL, and the UnicodeError of a bad IDNA name
        return None
    return urllib.parse.urlsplit(str(url)).hostname or None
