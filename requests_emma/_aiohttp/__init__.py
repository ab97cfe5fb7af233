"""requests-emma over aiohttp: the client middleware and its token calls.

Importing this package imports aiohttp and anyio (the ``[aiohttp]`` extra); ``import
requests_emma`` imports neither.
"""
