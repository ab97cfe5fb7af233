"""The names the command line reads from the configuration modules, under their old home.

The checks themselves live in :mod:`.credentials`, :mod:`.urls`, :mod:`.durations`,
:mod:`.secret` and :mod:`.keyword_options`; import from those. Only ``requests_emma._cli``
still imports this module, and it goes when the command line imports the others.
"""

from __future__ import annotations

from .credentials import API_URL_VAR, CLIENT_ID_VAR, CLIENT_SECRET_VAR
from .urls import DEFAULT_BASE_URL, base_url, origin

__all__ = [
    "API_URL_VAR",
    "CLIENT_ID_VAR",
    "CLIENT_SECRET_VAR",
    "DEFAULT_BASE_URL",
    "base_url",
    "origin",
]
