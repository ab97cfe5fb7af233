"""``python -m requests_emma``: the same as the ``requests-emma`` command."""

from __future__ import annotations

from ._cli.main import main

raise SystemExit(main())
