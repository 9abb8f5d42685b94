"""docs/benchmarks.md stays true to itself: quoted numbers match their tables, every table names its command."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
COMMAND = re.compile(r"`(python bench/|pss-bench |make |pytest |git )")


def test_torchmetrics_update_time_quoted_from_the_pq_speed_table():
    """Issue 23 item 22: the prose said 3.2 s per frame where the table says 5,039 ms."""
    text = DOC.read_text()
    block = text[text.index("<!-- pq_speed:start -->"):text.index("<!-- pq_speed:end -->")]
    table_ms = float(re.search(r"\| torchmetrics `PanopticQuality.update` \| ([\d.]+) \|", block).group(1))
    quoted = re.search(r"torchmetrics' own\s+`PanopticQuality.update`, ([\d,.]+) (ms|s) per frame", text)
    value = float(quoted.group(1).replace(",", "")) * (1000 if quoted.group(2) == "s" else 1)
    assert abs(value - table_ms) <= 0.005 * table_ms, (value, table_ms)  # the quote rounds the table's value


def _tables(lines):
    """``(first, last)`` line indices of each markdown table."""
    i = 0
    while i < len(lines):
        if lines[i].startswith("|"):
            j = i
            while j + 1 < len(lines) and lines[j + 1].startswith("|"):
                j += 1
            yield i, j
            i = j + 1
        else:
            i += 1


def test_every_table_names_the_command_that_produced_it():
    """Issue 23 item 22: a command (bench script, CLI, test, make) in the table's section or in the table."""
    lines = DOC.read_text().splitlines()
    for first, last in _tables(lines):
        start = max((k for k in range(first) if lines[k].startswith("#")), default=0)
        context = "\n".join(lines[start:last + 4])
        assert COMMAND.search(context) or "| command |" in lines[first], (first + 1, lines[first])


def test_the_page_does_not_claim_every_number_comes_from_bench():
    text = DOC.read_text()
    intro = text[:text.index("## PQ speed")]
    assert "names the command" in intro and "one-off" in intro
    assert "Every number on this page was produced by a script in `bench/`" not in text
