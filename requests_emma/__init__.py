"""requests-emma: call the emma multi-cloud API with plain ``requests``.

>>> import requests
>>> from requests_emma import EmmaAuth
>>> auth = EmmaAuth()  # EMMA_CLIENT_ID / EMMA_CLIENT_SECRET from the environment
>>> requests.get("https://api.emma.ms/external/v1/locations", auth=auth)  # doctest: +SKIP
"""

from __future__ import annotations

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

logging.getLogger("requests_emma").addHandler(logging.NullHandler())
