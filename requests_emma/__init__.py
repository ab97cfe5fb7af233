"""requests-emma: call the emma multi-cloud API with plain ``requests``.

>>> import requests
>>> from requests_emma import EmmaAuth
>>> auth = EmmaAuth()  # EMMA_CLIENT_ID / EMMA_CLIENT_SECRET from the environment
>>> requests.get("https://api.emma.ms/external/v1/locations", auth=auth)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.metadata
import logging

from ._auth import EmmaAuth
from ._cache import TokenCache
from ._errors import CredentialsError, EmmaAuthError, TokenRequestError, TokenResponseError
from ._file_cache import FileTokenCache
from ._redis_cache import RedisTokenCache
from ._retry import RetryPolicy
from ._session import EmmaSession
from ._token import Token

__all__ = [
    "CredentialsError",
    "EmmaAuth",
    "EmmaAuthError",
    "EmmaSession",
    "FileTokenCache",
    "RedisTokenCache",
    "RetryPolicy",
    "Token",
    "TokenCache",
    "TokenRequestError",
    "TokenResponseError",
]

try:
    __version__: str = importlib.metadata.version("requests-emma")
    """The installed distribution's version, from its metadata."""
except importlib.metadata.PackageNotFoundError:  # imported from a source tree, not installed
    __version__ = "0+unknown"

# Tracebacks, reprs and the docs show the public path, not the private module.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name

logging.getLogger("requests_emma").addHandler(logging.NullHandler())
