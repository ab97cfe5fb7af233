"""The token source every client adapter wraps (see ``source.py``)."""

from .source import TokenSource, source_of

__all__ = ["TokenSource", "source_of"]
