"""The ``requests-emma`` command line: its arguments, the commands, the guided demo and the
local test server (``serve``).

``demo`` and ``serve`` import the test kit on purpose: the emma they run is the test kit's
``FakeEmmaServer``, the same server the tests and users' own tests run against, built from
emma's published OpenAPI spec. A second fake server for the command line would drift from
the one that is tested. Only those two commands load it, and only when they run.
"""
