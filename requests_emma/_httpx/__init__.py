"""requests-emma over httpx: token calls through ``httpx.Client`` and ``httpx.AsyncClient``.

Importing this package imports httpx and anyio (the ``[httpx]`` extra); ``import
requests_emma`` imports neither.
"""
