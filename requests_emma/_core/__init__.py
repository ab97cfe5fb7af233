"""The pure core: every decision about the token, and nothing that does I/O.

The lifecycle (every decision), the wire format, the outcome of a token response, the token,
the retry policy and its backoff, the clock, the sealed cache entry and the configuration
checks. Nothing here opens a socket, starts a thread or sleeps; the drivers around it
(``requests_emma._requests``) do, and the caches (``requests_emma._caches``) store what it
seals.
"""
