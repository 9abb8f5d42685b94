"""Writing a bench script's table into docs/benchmarks.md, between its start/end markers."""

from __future__ import annotations

from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def replace_block(block: str, start: str, end: str, heading: str, doc: Path = BENCHMARKS) -> None:
    """Puts ``block`` (which begins with ``start`` and ends with ``end``) in place of the old one.

    Without the markers in ``doc`` yet, appends ``## heading`` and the block.
    """
    text = doc.read_text()
    if start in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + f"\n\n## {heading}\n\n" + block + "\n"
    doc.write_text(text)
