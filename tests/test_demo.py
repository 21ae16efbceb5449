"""The README's demo command must keep working: run its main() and check what it reports."""
from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from examples import demo


@pytest.fixture(autouse=True)
def _restore_environment() -> Iterator[None]:
    """The demo configures the bridge through os.environ, as a deployment does: put it back."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.parametrize("example", ["wsgi", "django"])
def test_demo_shows_both_sides(example: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--example", example]) == 0
    out = capsys.readouterr().out
    assert "OTLP: the receiver decoded 5 spans" in out
    assert "Bugsink stored 2 error events" in out
    assert "/issues/issue/" in out and "/event/last/" in out
    assert "(the OTLP span's too: yes)" in out and "NO)" not in out
    assert "RuntimeError" in out and "KeyError" in out
    assert "Everything stopped." in out
