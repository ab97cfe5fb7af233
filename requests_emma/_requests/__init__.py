"""The requests driver: ``EmmaAuth``, ``EmmaSession`` and what carries out a renewal with
requests (the transport, the whole-exchange deadline, the 401 replay and its body rewinding,
the proxies for loopback)."""
