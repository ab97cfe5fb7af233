"""The pure core: every decision about the token, and nothing that does I/O.

The lifecycle (every decision), the wire format, the outcome of a token response, the token,
the retry policy and its backoff, the clock, the sealed cache entry, and the checks of what
users configure: credentials, URLs and origins, durations, the secret's wrapper and the
keyword-only options. Nothing here opens a socket, starts a thread or waits on one; the
drivers around it (``requests_emma._requests``) do, and the caches
(``requests_emma._caches``) store what it seals.

No module here imports requests, urllib3, httpx, anyio, asyncio, socket or threading
(``tests/test_core_imports.py`` reads every import statement, and imports each module alone).
Three imports bring some of them in all the same, by design: the exceptions
(``requests_emma._errors``, whose root subclasses ``requests.RequestException``), tenacity
(the retry decider; it imports threading) and logging (the one ``requests_emma`` logger;
it imports threading for its own lock). Nothing here sleeps either: the renewal yields its
waits between token attempts as steps, and the drivers wait them out through the clock they
run with (``requests_emma._system_clock``, or a test's ``FakeClock``).
"""
