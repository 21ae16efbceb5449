"""The README's demo command must keep working: run its main() and check what it reports."""
from __future__ import annotations

import pytest

from examples import demo


def test_demo_shows_spans_arriving(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main() == 0
    out = capsys.readouterr().out
    assert "decoded 4 spans" in out
    assert "GET /users/{id}" in out
    assert "event exception: RuntimeError: could not load settings" in out
