"""docs/benchmarks.md is what benchmarks/report.py renders from the saved results."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

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


def test_a_missed_target_says_why_in_its_row() -> None:
    """A missed target with a reason shows it in its summary row, before the FAIL."""
    missed = report.Target("stall", "0 slow", "3 slow", False, reason="the load alone has 3")
    shown = report.page(**{**report.load(report.RESULTS), "sections": [_section([missed])]})
    assert "| 3 slow. Why: the load alone has 3 | **FAIL** |" in shown


def test_the_page_leads_with_one_chart_before_the_summary() -> None:
    """The first chart comes before the summary table, and is not shown again below."""
    opening = PAGE.split("\n## ", 1)[0]
    chart = re.search(r"!\[[^]]*\]\(([^)]+)\)", opening)
    assert chart is not None
    assert opening.index(chart[0]) < opening.index("| what |")
    assert PAGE.count(f"({chart[1]})") == 1


def test_wide_tables_are_transposed() -> None:
    """A table of more than WIDE columns shows one column per row instead."""
    rendered = report.table([f"h{k}" for k in range(8)], [["a", *range(7)], ["b", *range(7)]])
    assert rendered.splitlines()[0] == "| h0 | a | b |"
    assert len(rendered.splitlines()) == 2 + 7


def test_no_path_of_the_machine_that_ran() -> None:
    """A virtual environment's path on the machine that ran is shown from site-packages on."""
    assert "/.venv/" not in PAGE and "/tmp/" not in PAGE
    text = "imports `/tmp/x/.venv/lib/python3.11/site-packages/requests_emma/__init__.py`."
    assert report.without_build_paths(text) == "imports `site-packages/requests_emma/__init__.py`."


def test_a_paragraph_or_note_said_in_the_section_before_is_not_repeated() -> None:
    """The 401 storm's set-up paragraph and notes shared with the cold start are said once."""
    first = _section([], intro="Set-up.\n\nCold start.", notes=["A failure is..."])
    second = _section([], intro="Set-up.\n\nStorm.", notes=["A failure is...", "Storm note"])
    lines = report.section_lines(second, previous=first)
    assert "Set-up." not in lines and "Storm." in lines
    assert "- A failure is..." not in lines and "- Storm note" in lines
    assert f"Set up as in [{first.title}](#{report.anchor(first.title)}) above." in lines


def _section(targets: list[Any], *, intro: str = "Intro.", notes: list[str] | None = None) -> Any:
    return report.Section("A section", intro, ["h"], [["v"]], notes or [], targets)
