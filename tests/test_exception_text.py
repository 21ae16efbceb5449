"""``bridge.capturing.format_exception``: the text of ``traceback.format_exception`` (what OpenTelemetry's
``Span.record_exception`` records), without a ``stat`` per file on every call."""

from __future__ import annotations

import json
import linecache
import os
import sys
import traceback
from typing import Any, Callable

import pytest

from bridge.capturing import format_exception


def lookup(data: dict[str, int], key: str) -> int:
    return data[key] + 1


def chained() -> None:
    try:
        lookup({}, "missing")
    except KeyError as exc:
        raise ValueError("outer failure") from exc


def during_handling() -> None:
    try:
        chained()
    except ValueError:
        raise RuntimeError("while handling")  # noqa: B904 - the implicit context is what is tested


def group() -> None:
    errors: list[Exception] = []
    for call in (chained, lambda: json.loads("{bad")):
        try:
            call()
        except Exception as exc:
            errors.append(exc)
    raise ExceptionGroup("two failures", errors)  # noqa: F821 - Python 3.11+ only (skipped before)


CASES: list[Callable[[], Any]] = [chained, during_handling, lambda: json.loads("{bad")]
if sys.version_info >= (3, 11):
    CASES.append(group)


@pytest.mark.parametrize("call", CASES)
def test_the_text_is_the_standard_librarys(call: Callable[[], Any]) -> None:
    with pytest.raises(BaseException) as info:
        call()
    assert format_exception(info.value) == "".join(traceback.format_exception(info.value))


def test_no_file_is_checked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError) as info:
        chained()
    format_exception(info.value)  # the lines are in linecache from here on
    checked: list[str] = []
    monkeypatch.setattr(linecache, "checkcache", lambda filename=None: checked.append(str(filename)))
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda *a, **k: checked.append(str(a[0])) or real_stat(*a, **k))
    text = format_exception(info.value)
    assert checked == [] and "return data[key] + 1" in text
