"""The public contract of bridge.stacktraces: dispatch, fill-ins, never raising, Sentry values, speed."""
from __future__ import annotations

import time
import timeit
import traceback
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bridge.stacktraces as stacktraces
from bridge.stacktraces import detect_language, parse, to_sentry_values
from tests.judges import normalize
from tests.stacktrace_samples import sample

SAMPLES = {
    "go_panic.txt": "go", "go_http.txt": "go", "go_otel_stack.txt": "go",
    "dotnet_inner.txt": "dotnet", "dotnet_console.txt": "dotnet",
    "ruby34_cause.txt": "ruby", "ruby33_multiline.txt": "ruby", "ruby27_bottom.txt": "ruby",
}
LANGUAGES = [None, "python", "java", "nodejs", "go", "dotnet", "ruby", "webjs", "php", "rust", "", "PYTHON"]


def _python_trace(depth: int = 30) -> str:
    """A 3.11-style traceback of ``depth`` distinct frames in distinct files, like a deep web request."""
    frames = [
        f'  File "/srv/app/myapp/module{i}.py", line {10 + i}, in handler_{i}\n'
        f"    result = step_{i}(request)\n"
        f"             {'^' * (len(str(i)) + 14)}\n"
        for i in range(depth)
    ]
    return "Traceback (most recent call last):\n" + "".join(frames) + "myapp.errors.DeepError: deep\n"


def _valid(excs: list[Any]) -> None:
    for exc in excs:
        assert set(exc) == {"type", "module", "value", "frames", "relation"}
        assert isinstance(exc["type"], str) and exc["type"]
        assert isinstance(exc["value"], str)
        assert exc["module"] is None or isinstance(exc["module"], str)
        assert exc["relation"] in (None, "__cause__", "__context__", "caused_by", "inner")
        for f in exc["frames"]:
            assert isinstance(f, dict) and None not in f.values()
            assert isinstance(f.get("lineno", 0), int) and isinstance(f.get("colno", 0), int)
    if excs:
        assert excs[-1]["relation"] is None


@pytest.mark.parametrize(("name", "language"), sorted(SAMPLES.items()))
def test_detect_language_on_samples(name: str, language: str) -> None:
    text = sample(name)
    assert detect_language(text) == language
    assert parse(text) == parse(text, language)


def test_detect_language_on_nothing() -> None:
    assert detect_language("") is None
    assert detect_language("just some words\nand more") is None
    assert detect_language(None) is None  # type: ignore[arg-type]


def test_wrong_language_falls_back_to_detection() -> None:
    text = sample("dotnet_inner.txt")
    assert parse(text, "python") == parse(text, "dotnet")
    assert parse(text, "kotlin") == parse(text, "dotnet")


def test_aliases() -> None:
    text = _python_trace(3)
    assert parse(text, "py") == parse(text, "Python ") == parse(text, "python")


def test_unknown_language_keeps_a_frameless_exception() -> None:
    text = "PHP Fatal error:  Uncaught Exception: boom in /var/www/index.php:3\nStack trace:\n#0 {main}\n"
    (exc,) = parse(text, "php", exception_type="Exception", exception_message="boom")
    assert exc == {"type": "Exception", "module": None, "value": "boom", "frames": [], "relation": None}
    (exc,) = parse(text, "php")
    assert exc["type"] == "Error" and exc["value"].startswith("PHP Fatal error:")


def test_empty_inputs() -> None:
    assert parse("") == []
    assert parse("   \n") == []
    (exc,) = parse("", "go", exception_type="*fs.PathError", exception_message="open x: no such file")
    assert (exc["type"], exc["value"], exc["frames"]) == ("*fs.PathError", "open x: no such file", [])
    (exc,) = parse(None, None, exception_message="only a message")  # type: ignore[arg-type]
    assert (exc["type"], exc["value"]) == ("Error", "only a message")
    (exc,) = parse("", "java", exception_type="java.io.IOException")
    assert (exc["module"], exc["type"], exc["value"]) == ("java.io", "IOException", "")


def test_exception_type_split_per_language() -> None:
    cases = [
        ("python", "myapp.errors.Outer.Inner", ("myapp.errors", "Outer.Inner")),
        ("java", "com.acme.Outer$Inner", ("com.acme", "Outer$Inner")),
        ("dotnet", "System.IO.IOException", ("System.IO", "IOException")),
        ("ruby", "Net::HTTP::Error", ("Net::HTTP", "Error")),
        ("nodejs", "TypeError", (None, "TypeError")),
        ("go", "*url.Error", (None, "*url.Error")),
        (None, "builtins.ValueError", (None, "ValueError")),
        (None, "*fs.PathError", (None, "*fs.PathError")),
        (None, "ActiveRecord::RecordNotFound", ("ActiveRecord", "RecordNotFound")),
    ]
    for language, name, expected in cases:
        (exc,) = parse("", language, exception_type=name)
        assert (exc["module"], exc["type"]) == expected, (language, name)


def test_a_broken_parser_never_loses_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(text: str) -> list[Any]:
        raise RuntimeError("parser bug")

    monkeypatch.setitem(stacktraces._PARSERS, "python", broken)
    (exc,) = parse(_python_trace(3), "python", exception_type="ValueError", exception_message="x")
    assert (exc["type"], exc["value"]) == ("ValueError", "x")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(), language=st.sampled_from(LANGUAGES), exc_type=st.text(min_size=1).filter(str.strip))
def test_arbitrary_text_never_raises(text: str, language: str | None, exc_type: str) -> None:
    out = parse(text, language, exception_type=exc_type)
    assert len(out) >= 1
    _valid(out)
    _valid(parse(text, language))
    detect_language(text)


_PIECES = [
    line
    for name in SAMPLES
    for line in sample(name).splitlines()
] + _python_trace(4).splitlines() + [
    "Traceback (most recent call last):", "The above exception was the direct cause of the following exception:",
    "During handling of the above exception, another exception occurred:", "  + Exception Group Traceback "
    "(most recent call last):", "  | ValueError: x", "  +-+---------------- 1 ----------------", "    | x",
    "  [Previous line repeated 99999999 more times]", "\tat a.B.c(B.java:1)", "\t... 99 more", "Caused by: x.Y: z",
    "\tSuppressed: a.B", "    at f (/x.js:1:2)", "    ... 7 lines matching cause stack trace ...",
    "  [cause]: Error: c {", " ---> A.B: c", "   --- End of inner exception stack trace ---", "goroutine 1 [running]:",
    "\tfrom x.rb:1:in 'y'", "  File \"x\", line 1", "   at X.Y() in :line 0", "",
]


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.sampled_from(_PIECES) | st.text(max_size=40), max_size=40),
    language=st.sampled_from(LANGUAGES),
)
def test_shuffled_trace_fragments_never_raise(lines: list[str], language: str | None) -> None:
    text = "\n".join(lines)
    out = parse(text, language, exception_type="Boom", exception_message="m")
    assert out and out[-1]["type"] == "Boom" and out[-1]["value"] == "m"
    _valid(out)
    _valid(parse(text, language))


_N = 20_000
_HOSTILE = [
    "\n" * _N, "\t\n" * _N, " " * _N, "    at " + " (" * _N, "Error: x\n    at f" + " (a" * _N + ":1:2",
    "   at " + " in x" * _N, "System.X: y\n   at A.B(" + ") in x" * _N, "panic: " + " " * _N + "x",
    "goroutine 1 [running]:\n" + "main.f(" * _N, "a." * _N + "!", "\tat " + "a.b(" * _N,
    "x.rb:1:in 'y': " + " (Ab" * _N, '  File "' + '", line 1' * _N, "a" * _N + ": " + "b" * _N,
    "Error: x\n    at eval (eval at " + "(" * _N + ")", "Error\n" + "a@" * _N + ":1", ":1" * _N,
    "Error: x\n    at f (/a.js:1:2) {\n  [cause]: " + " {" * _N, "System.X: y\n   at " + "a." * _N + "(",
]


@pytest.mark.parametrize("index", range(len(_HOSTILE)))
def test_hostile_lines_take_linear_time(index: int) -> None:
    """Long lines built to make backtracking regexes quadratic: every language stays fast on them."""
    text = _HOSTILE[index]
    start = time.perf_counter()
    for language in LANGUAGES[:7]:
        _valid(parse(text, language, exception_type="E"))
    detect_language(text)
    assert time.perf_counter() - start < 1.0


def test_huge_repeat_counts_stay_bounded() -> None:
    text = (
        'Traceback (most recent call last):\n  File "/a.py", line 1, in f\n'
        "  [Previous line repeated 999999999 more times]\nRecursionError: x\n"
    )
    (exc,) = parse(text)
    assert len(exc["frames"]) <= 1 + 1000


def test_to_sentry_values_pass_relay() -> None:
    try:
        raise KeyError("k")
    except KeyError:
        try:
            raise ValueError("v")
        except ValueError as exc:
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    excs = parse(text, "python", exception_type="ValueError", exception_message="v")
    values = to_sentry_values(excs, mechanism_type="wsgi", handled=False)
    assert [v["mechanism"] for v in values] == [
        {"type": "chained", "exception_id": 1, "parent_id": 0, "source": "__context__"},
        {"type": "wsgi", "handled": False, "exception_id": 0},
    ]
    event = {
        "event_id": uuid.uuid4().hex, "level": "error", "platform": "python", "timestamp": 1700000000.0,
        "exception": {"values": values},
    }
    out = normalize(event)
    got = out["exception"]["values"]
    assert [v["type"] for v in got] == ["KeyError", "ValueError"]
    frame = got[-1]["stacktrace"]["frames"][-1]
    assert frame["lineno"] == excs[-1]["frames"][-1]["lineno"] and frame["in_app"] is True
    # every language's values pass too
    for name in SAMPLES:
        values = to_sentry_values(parse(sample(name)))
        normalize({"event_id": uuid.uuid4().hex, "level": "error", "exception": {"values": values}})


def test_to_sentry_values_single() -> None:
    (value,) = to_sentry_values(parse("", "python", exception_type="a.B", exception_message="m"))
    assert value == {"type": "B", "value": "m", "module": "a", "mechanism": {"type": "generic"}}


def test_parse_30_python_frames_fast() -> None:
    text = _python_trace(30)
    (exc,) = parse(text, "python")
    assert len(exc["frames"]) == 30 and exc["frames"][0]["module"] == "myapp.module0"
    runs = 2000
    # CPU time of this process: other work on a shared machine does not count against us
    timer = timeit.Timer(lambda: parse(text, "python"), timer=time.process_time)
    per_call = min(timer.repeat(number=runs, repeat=5)) / runs
    print(f"parse(30-frame Python traceback): {per_call * 1e6:.1f} µs")
    assert per_call < 100e-6
