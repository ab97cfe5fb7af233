"""docs/benchmarks.md is what benchmarks/report.py renders from the saved results."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# benchmarks/ is not a package, and its module names (server, fleet) are too plain to put it
# on sys.path: load report.py alone.
_spec = importlib.util.spec_from_file_location("report", ROOT / "benchmarks" / "report.py")
assert _spec is not None and _spec.loader is not None
report = importlib.util.module_from_spec(_spec)
sys.modules["report"] = report  # dataclasses look their module up
_spec.loader.exec_module(report)
PAGE = (ROOT / "docs" / "benchmarks.md").read_text()


def test_the_page_renders_from_the_saved_results() -> None:
    """report.py turns docs/benchmarks/results.json into the committed page, byte for byte."""
    assert report.page(**report.load(report.RESULTS)) == PAGE


def test_the_page_opens_with_every_target_and_its_result() -> None:
    """Before the first section: one summary row per target, each with pass or FAIL."""
    opening = PAGE.split("\n## ", 1)[0]
    results = report.load(report.RESULTS)
    targets = [t for section in results["sections"] for t in section.targets]
    rows = [line for line in opening.splitlines() if line.startswith("| [")]
    assert len(rows) == len(targets) > 0
    assert all(row.endswith((" pass |", " **FAIL** |")) for row in rows)


def test_a_long_commit_subject_is_shortened_between_words() -> None:
    """The revision shown keeps whole words of the subject and marks the cut."""
    revision = "6427330 " + "the Redis lock uses the redis-py imported at module level " * 3
    shown = report.short_revision(revision)
    assert len(shown) <= 80
    assert shown.endswith(" …")
    assert revision.startswith(shown.removesuffix(" …") + " ")
