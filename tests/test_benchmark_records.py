"""The README's benchmark tables that name a records folder are what its reports give.

Why: a number typed into the README can drift from what was measured, and the scratch folder
a suite ran in does not outlive the machine. Suites whose reports are committed under
``benchmarks/records/`` (each run's ``test_report.json`` and ``benchmark_run.json``) have
their README table recomputed here from those files, cell by cell, for the columns the README
shows.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hsi.benchmarks import load_published
from hsi.benchmarks.tables import collect, render_markdown

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
# an HTML comment (invisible on GitHub) naming the folder, a blank line, then the table
_MARKED_TABLE = re.compile(
    r"<!-- table: hsi benchmark --collect (\S+) -->\n\s*\n((?:[ \t]*\|.*\n)+)", re.M
)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _table(lines: list[str]) -> tuple[list[str], dict[str, dict[str, str]]]:
    """A markdown table's header and its rows by run name (the first column)."""
    header = _cells(lines[0])
    rows = {}
    for line in lines[2:]:
        cells = _cells(line)
        assert len(cells) == len(header), f"row with {len(cells)} cells: {line}"
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return header, rows


def _generated_table(markdown: str) -> list[str]:
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| run |"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


MARKED = _MARKED_TABLE.findall(README)


def test_the_readme_has_tables_from_committed_records() -> None:
    assert MARKED, "no README table names its records folder"


@pytest.mark.parametrize(("folder", "table"), MARKED, ids=[folder for folder, _ in MARKED])
def test_readme_table_is_what_its_records_give(folder: str, table: str) -> None:
    records = ROOT / folder
    assert records.is_dir(), f"{folder} (named by the README) does not exist"
    rows = collect([records], load_published(), echo=pytest.fail)
    generated_header, generated = _table(_generated_table(render_markdown(rows)))
    header, shown = _table(table.strip().splitlines())
    assert set(header) <= set(generated_header), "the README shows a column hsi does not write"
    assert set(shown) == set(generated), "the README's runs differ from the records' runs"
    for run, cells in shown.items():
        for column, cell in cells.items():
            assert cell == generated[run][column], f"{run}, {column}: README {cell!r}"
