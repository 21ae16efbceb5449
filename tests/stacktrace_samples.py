"""Loading the hand-written sample traces under tests/data/stacktraces/ (comment header, ``----``, text)."""
from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).parent / "data" / "stacktraces"


def sample(name: str) -> str:
    """The trace in ``name`` without its comment header (which says which runtime's format it follows)."""
    text = (DATA / name).read_text(encoding="utf-8")
    header, sep, body = text.partition("----\n")
    assert sep and all(line.startswith("#") for line in header.splitlines()), name
    return body
