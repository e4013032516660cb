"""Replace one marked section of a Markdown file (BENCHMARKS.md), appending it if missing."""

from __future__ import annotations

from pathlib import Path


def replace_section(doc: str | Path, begin: str, end: str, body: str) -> None:
    """Write `body` (which starts with `begin` and ends with `end`) over the text between the
    markers in `doc`; a file without them gets the section at its end."""
    doc = Path(doc)
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if begin not in text:
        text = text.rstrip("\n") + f"\n\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    doc.write_text(head + body + rest.split(end, 1)[1])
