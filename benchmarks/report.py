"""The results page: a summary of the targets, sections with Markdown tables, PNG charts.

``run.py`` measures, saves what it measured as JSON (``save``) and renders the page from it
(``page``). Rendering again needs no new run: ``python benchmarks/report.py`` re-renders
``docs/benchmarks.md`` from ``docs/benchmarks/results.json``, so the page's layout can change
without a quarter of an hour of both cores.

The page leads with one chart and the targets with their results, one row each (a missed
target with the reason it was missed); the sections follow, each with its chart before its
raw table, then what was run where (the command, machine, versions); raw listings
(profiler output) stay collapsed, trimmed to their top rows.

The page must read at 1280 px: a table of more than ``WIDE`` columns is shown transposed
(one column per contender), a paragraph or note a section repeats from the one before is
said once, and a path of the machine that ran (a temporary virtual environment) is not
shown.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "docs" / "benchmarks" / "results.json"


@dataclasses.dataclass
class Target:
    what: str
    target: str
    measured: str
    passed: bool
    reason: str = ""  # for a missed target: why, in a few words, shown in its summary row


@dataclasses.dataclass
class Section:
    title: str
    intro: str
    headers: Sequence[str]
    rows: list[Sequence[object]]
    notes: list[str] = dataclasses.field(default_factory=list)
    targets: list[Target] = dataclasses.field(default_factory=list)
    chart: str | None = None  # file name under docs/benchmarks/
    extra: str = ""  # more Markdown after the table
    listing: str = ""  # raw output (a profile), shown collapsed: Markdown, code fences included


#: Tables with more columns than this are transposed: at 1280 px, ten columns do not fit.
WIDE = 6

#: A path into a virtual environment on the machine that ran (``/tmp/x/.venv/lib/...``).
_BUILD_PATH = re.compile(r"`/[^`\s]*/(site-packages/[^`\s]*)`")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    if len(headers) > WIDE and rows:  # one column per row instead, as many rows as columns
        headers, rows = (
            [headers[0], *(str(row[0]) for row in rows)],
            [[header, *(row[k] for row in rows)] for k, header in enumerate(headers) if k],
        )

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: float, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def verdict(passed: bool) -> str:
    return "pass" if passed else "**FAIL**"


def measured(target: Target) -> str:
    """What was measured, and for a missed target the reason, in its summary row."""
    if target.passed or not target.reason:
        return target.measured
    return f"{target.measured}. Why: {target.reason}"


def without_build_paths(text: str) -> str:
    """``text`` without the paths of the machine that ran: ``site-packages/...`` only."""
    return _BUILD_PATH.sub(r"`\1`", text)


def anchor(title: str) -> str:
    """The anchor MyST gives a heading (``myst_heading_anchors``): GitHub's slug."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def short_revision(revision: str, width: int = 80) -> str:
    """``hash subject``, the subject shortened at a word boundary (never mid-word) to fit."""
    return textwrap.shorten(revision, width=width, placeholder=" …")


def page(
    *,
    command: str,
    quick: bool,
    when: str,
    revision: str,
    machine: dict[str, str],
    versions: dict[str, str],
    sections: Sequence[Section],
    seconds: float,
    chart_dir: str = "benchmarks",
    load_at_end: str = "?",
) -> str:
    targets = [(s.title, t) for s in sections for t in s.targets]
    passed = sum(t.passed for _, t in targets)
    mode = "quick mode: fewer, shorter rounds" if quick else "full mode"
    lead = next((s for s in sections if s.chart), None)
    out = [
        "# Benchmarks",
        "",
        "requests-emma against a static header and the peer libraries, in one run on one",
        f"machine ({when}, {mode}): **{passed} of {len(targets)} targets pass**. How it was",
        "run, on what, and how to run it again: [about this run](#about-this-run). Each",
        "section below has its chart, then its raw figures.",
        "",
    ]
    if lead is not None:
        out += [f"![{lead.title}]({chart_dir}/{lead.chart})", ""]
    out.append(
        table(
            ["what", "target", "measured", "result"],
            [
                (f"[{t.what}](#{anchor(title)})", t.target, measured(t), verdict(t.passed))
                for title, t in targets
            ],
        )
    )
    previous = None
    for section in sections:
        shown_chart = section is not lead
        out += ["", *section_lines(section, chart_dir, previous=previous, chart=shown_chart)]
        previous = section
    out += [
        "",
        "## About this run",
        "",
        "Generated by the benchmark suite; do not edit by hand. To measure again and regenerate",
        "this page and its charts:",
        "",
        "```console",
        "$ python3 -m venv .venv && . .venv/bin/activate",
        "$ pip install . -r benchmarks/requirements.txt",
        f"$ {command}",
        "```",
        "",
        "(`--quick` runs fewer and shorter rounds, for trying it out; its numbers are rougher.)",
        "`python benchmarks/report.py` renders the page again from the saved results",
        "(`docs/benchmarks/results.json`) without measuring.",
        "",
        "Every contender runs against the same fake emma (`benchmarks/server.py`) in its own",
        "process, over keep-alive loopback connections; contenders alternate round by round,",
        "and each figure is a median over rounds. Ratios are taken within this one run.",
        "",
        f"- run: {when}, {'quick mode' if quick else 'full mode'}, {seconds:.0f} s",
        f"- code: `{short_revision(revision)}`",
        "- machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()),
        f"- load average at the end: {load_at_end} (a shared machine: other work runs too)",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
    ]
    return "\n".join(out).rstrip() + "\n"


def section_lines(
    section: Section,
    chart_dir: str = "benchmarks",
    *,
    previous: Section | None = None,
    chart: bool = True,
) -> list[str]:
    """One section of the page: its heading, intro, chart, table, notes, extra, listing.

    What ``previous`` (the section before) already said is not said again: a paragraph of
    its intro becomes a pointer to it, and a note of its notes is left out.
    """
    out = [f"## {section.title}", ""]
    said, pointer = set(), ""
    if previous is not None:
        said = set(_paragraphs(previous.intro))
        pointer = f"Set up as in [{previous.title}](#{anchor(previous.title)}) above."
    for paragraph in _paragraphs(section.intro):
        out += [pointer if paragraph in said else without_build_paths(paragraph), ""]
    if section.chart and chart:
        out += [f"![{section.title}]({chart_dir}/{section.chart})", ""]
    if section.rows:
        out += [table(section.headers, section.rows), ""]
    notes = [n for n in section.notes if previous is None or n not in previous.notes]
    out += [f"- {without_build_paths(note)}" for note in notes]
    if notes:
        out.append("")
    if section.extra:
        out += [without_build_paths(section.extra.strip()), ""]
    if section.listing:
        out += [
            "<details><summary>The profiler's listings</summary>",
            "",
            section.listing.strip(),
            "",
            "</details>",
            "",
        ]
    return out


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in text.strip().split("\n\n") if p.strip()]


def section_markdown(section: Section, chart_dir: str = "benchmarks") -> str:
    """One section alone, as a benchmark module run on its own prints it."""
    return "\n".join(section_lines(section, chart_dir)).rstrip() + "\n"


def save(path: Path, **page_arguments: Any) -> None:
    """Write what ``page`` needs as JSON, so the page can be rendered again without a run."""
    data = dict(page_arguments)
    data["sections"] = [dataclasses.asdict(section) for section in data["sections"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def load(path: Path) -> dict[str, Any]:
    """``page``'s arguments, as ``save`` wrote them."""
    data: dict[str, Any] = json.loads(path.read_text())
    data["sections"] = [
        Section(**{**section, "targets": [Target(**t) for t in section["targets"]]})
        for section in data["sections"]
    ]
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render the benchmark page from saved results.")
    parser.add_argument("results", nargs="?", type=Path, default=RESULTS)
    parser.add_argument("--output", type=Path, default=PAGE, help=f"default {PAGE}")
    args = parser.parse_args(argv)
    args.output.write_text(page(**load(args.results)))
    print(f"wrote {args.output} from {args.results}")
    return 0


def bar_chart(
    path: Path,
    *,
    title: str,
    labels: Sequence[str],
    series: dict[str, Sequence[float]],
    ylabel: str,
    log: bool = False,
    line: float | None = None,
    line_label: str = "",
) -> None:
    """Grouped bars: one group per label, one bar per series."""
    import matplotlib  # here: rendering the page again from saved results needs no matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(labels))]
        clean = [0.0 if v is None or math.isnan(v) else v for v in values]
        ax.bar(xs, clean, width, label=name)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if log:
        ax.set_yscale("log")
        # Plain numbers on the ticks (20, 50, 200, not 2x10^1), and of the minor ticks only
        # 2 and 5 of each decade, which leave room between them.
        from matplotlib.ticker import FuncFormatter

        def plain(value: float, _: object) -> str:
            mantissa = round(value / 10 ** math.floor(math.log10(value)), 6)
            return f"{value:g}" if mantissa in (1, 2, 5) else ""

        ax.yaxis.set_major_formatter(FuncFormatter(plain))
        ax.yaxis.set_minor_formatter(FuncFormatter(plain))
    if line is not None:
        ax.axhline(line, color="black", linestyle="--", linewidth=1, label=line_label)
    if len(series) > 1 or line is not None:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
