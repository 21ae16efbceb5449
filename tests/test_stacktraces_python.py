"""Python tracebacks: real exceptions raised here, formatted by ``traceback`` (as the OTel SDK does),
parsed back and compared with ``traceback.extract_tb`` of the same exception objects."""
from __future__ import annotations

import builtins
import importlib
import json
import sys
import traceback
from typing import Any, Callable, NoReturn

import pytest

from bridge.stacktraces import parse
from bridge.stacktraces.python import MAX_REPEAT, _path_info, split_python_type


def _format(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _raise(fn: Callable[[], Any]) -> BaseException:
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - we want every kind
        return exc
    raise AssertionError("did not raise")


def _chain(exc: BaseException) -> list[tuple[BaseException, str | None]]:
    """The chain as traceback prints it, oldest first, with each one's relation to the next."""
    out: list[tuple[BaseException, str | None]] = []
    relation: str | None = None
    current: BaseException | None = exc
    while current is not None:
        out.append((current, relation))
        if current.__cause__ is not None:
            current, relation = current.__cause__, "__cause__"
        elif current.__context__ is not None and not current.__suppress_context__:
            current, relation = current.__context__, "__context__"
        else:
            current = None
    return out[::-1]


def _check(exc: BaseException) -> list[Any]:
    text = _format(exc)
    parsed = parse(text, "python")
    chain = _chain(exc)
    assert len(parsed) == len(chain), text
    for got, (real, relation) in zip(parsed, chain):
        assert got["type"] == type(real).__qualname__
        module = type(real).__module__
        assert got["module"] == (None if module in ("builtins", "__main__") else module)
        assert got["relation"] == relation
        expected = traceback.extract_tb(real.__traceback__)
        assert [(f["abs_path"], f["lineno"], f["function"]) for f in got["frames"]] == [
            (fs.filename, fs.lineno, fs.name) for fs in expected
        ]
        assert [f.get("context_line") for f in got["frames"]] == [fs.line or None for fs in expected]
    return parsed


class AppError(Exception):
    pass


def _level3() -> NoReturn:
    raise KeyError("missing")


def _level2() -> None:
    try:
        _level3()
    except KeyError as exc:
        raise AppError("could not load\nsecond line of the message") from exc


def _level1() -> None:
    try:
        _level2()
    except AppError:
        print(1 / 0)


def test_simple_frames_match_extract_tb() -> None:
    parsed = _check(_raise(_level3))
    assert parsed[0]["value"] == "'missing'"
    frame = parsed[0]["frames"][-1]
    assert frame["in_app"] is True and frame["abs_path"] == __file__


def test_cause_and_context_chain() -> None:
    parsed = _check(_raise(_level1))
    assert [p["type"] for p in parsed] == ["KeyError", "AppError", "ZeroDivisionError"]
    assert [p["relation"] for p in parsed] == ["__cause__", "__context__", None]
    assert parsed[1]["value"] == "could not load\nsecond line of the message"
    assert parsed[2]["value"] == "division by zero"


def test_suppressed_context_and_unraised_cause() -> None:
    def inner() -> None:
        try:
            raise ValueError("hidden")
        except ValueError:
            raise TypeError("shown") from ValueError("never raised")

    parsed = _check(_raise(inner))
    assert parsed[0]["frames"] == [] and parsed[0]["value"] == "never raised"


def _recurse(n: int) -> None:
    if n == 0:
        raise RuntimeError("bottom")
    _recurse(n - 1)


def test_repeated_lines_are_expanded() -> None:
    exc = _raise(lambda: _recurse(40))
    assert "more times]" in _format(exc)
    parsed = _check(exc)
    assert len(parsed[-1]["frames"]) > 40


def test_real_recursion_error_is_capped() -> None:
    exc = _raise(lambda: _recurse(10**6))
    assert isinstance(exc, RecursionError)
    frames = parse(_format(exc), "python")[-1]["frames"]
    assert 3 + MAX_REPEAT <= len(frames) <= 10 + MAX_REPEAT
    assert frames[-1]["function"] == "_recurse"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception groups are new in 3.11")
def test_exception_group_keeps_the_top_level_group() -> None:
    ExceptionGroup = builtins.ExceptionGroup  # noqa: N806 - not a builtin name before 3.11
    def grouped() -> None:
        try:
            _level3()
        except KeyError as cause:
            errors = [_raise(lambda: int("x")), ExceptionGroup("nested", [TypeError("t")])]
            raise ExceptionGroup("several things failed", errors) from cause

    def after() -> None:
        try:
            grouped()
        except ExceptionGroup:
            raise LookupError("after the group") from None

    exc = _raise(grouped)
    text = _format(exc)
    assert "+-+----" in text
    parsed = _check(exc)
    assert parsed[-1]["type"] == "ExceptionGroup"
    assert parsed[-1]["value"] == str(exc)
    # a group in the middle of a chain
    exc2 = _raise(lambda: _raise_during(grouped))
    parsed2 = _check(exc2)
    assert [p["type"] for p in parsed2] == ["KeyError", "ExceptionGroup", "LookupError"]
    _check(_raise(after))


def _raise_during(fn: Callable[[], None]) -> None:
    try:
        fn()
    except BaseException:
        raise LookupError("while handling a group")  # noqa: B904 - the context is the point


def test_syntax_error_block() -> None:
    exc = _raise(lambda: compile("x = (1,\n", "<generated>", "exec"))
    parsed = _check(exc)
    assert parsed[-1]["type"] == "SyntaxError"
    assert parsed[-1]["value"] == str(exc)


def test_stdlib_site_packages_and_frozen_frames() -> None:
    parsed = _check(_raise(lambda: json.loads("{bad")))
    assert parsed[-1]["type"] == "JSONDecodeError" and parsed[-1]["module"] == "json.decoder"
    lib = [f for f in parsed[-1]["frames"] if "json" in f["abs_path"]]
    assert lib and all(f["in_app"] is False for f in lib)
    assert {f["module"] for f in lib} >= {"json", "json.decoder"}
    assert lib[-1]["filename"] == "json/decoder.py"

    version = pytest.importorskip("packaging.version")
    parsed = _check(_raise(lambda: version.Version("not a version")))
    assert parsed[-1]["module"] == "packaging.version"
    third = parsed[-1]["frames"][-1]
    assert third["module"] == "packaging.version" and third["in_app"] is False
    assert third["filename"] == "packaging/version.py"

    parsed = _check(_raise(lambda: importlib.import_module("no_such_module_anywhere")))
    frozen = [f for f in parsed[-1]["frames"] if f["abs_path"].startswith("<frozen")]
    assert frozen and all(f["in_app"] is False and f["module"].startswith("importlib") for f in frozen)


def test_local_and_nested_classes() -> None:
    class Local(Exception):
        class Inner(Exception):
            pass

    parsed = _check(_raise(lambda: (_ for _ in ()).throw(Local.Inner("deep"))))
    assert parsed[-1]["type"] == Local.Inner.__qualname__


def test_through_the_opentelemetry_sdk() -> None:
    """The attributes the real OTel SDK records for a real exception."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with pytest.raises(ZeroDivisionError), tracer.start_as_current_span("request"):
        _level1()
    (span,) = exporter.get_finished_spans()
    (event,) = [e for e in span.events if e.name == "exception"]
    attrs = dict(event.attributes or {})
    parsed = parse(
        str(attrs["exception.stacktrace"]), "python",
        exception_type=str(attrs["exception.type"]), exception_message=str(attrs["exception.message"]),
    )
    assert [p["type"] for p in parsed] == ["KeyError", "AppError", "ZeroDivisionError"]
    assert parsed[1]["module"] == AppError.__module__
    assert parsed[-1]["value"] == "division by zero"
    assert parsed[-1]["frames"][-1]["function"] == "_level1"


def test_exception_type_with_module_fills_in() -> None:
    text = 'Traceback (most recent call last):\n  File "/srv/x.py", line 3, in <module>\nMyErr: boom\n'
    parsed = parse(text, "python", exception_type="__main__.MyErr", exception_message="boom!")
    assert (parsed[-1]["type"], parsed[-1]["module"], parsed[-1]["value"]) == ("MyErr", "__main__", "boom!")
    parsed = parse(text.replace("MyErr:", "pkg.mod.MyErr:"), "python", exception_type="MyErr")
    assert (parsed[-1]["type"], parsed[-1]["module"]) == ("MyErr", "pkg.mod")


def test_indented_traceback_in_a_log() -> None:
    exc = _raise(_level1)
    text = "".join("    " + line + "\n" for line in _format(exc).splitlines())
    parsed = parse(text)
    assert [p["type"] for p in parsed] == ["KeyError", "AppError", "ZeroDivisionError"]
    assert parsed[-1]["frames"][-1]["lineno"] == traceback.extract_tb(exc.__traceback__)[-1].lineno


def test_two_unrelated_tracebacks_keep_the_first() -> None:
    one = _format(_raise(_level3))
    two = _format(_raise(lambda: 1 / 0))
    parsed = parse(one + two, "python")
    assert [p["type"] for p in parsed] == ["KeyError"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ValueError", (None, "ValueError")),
        ("json.decoder.JSONDecodeError", ("json.decoder", "JSONDecodeError")),
        ("myapp.errors.Outer.Inner", ("myapp.errors", "Outer.Inner")),
        ("myapp.views.handler.<locals>.Local", ("myapp.views", "handler.<locals>.Local")),
        ("Crypto.Cipher.Error", ("Crypto.Cipher", "Error")),
        ("_private.Err", ("_private", "Err")),
    ],
)
def test_split_python_type(name: str, expected: tuple[str | None, str]) -> None:
    assert split_python_type(name) == expected


@pytest.mark.parametrize(
    ("path", "cwd", "expected"),
    [
        ("/usr/lib/python3/dist-packages/requests/api.py", "/", ("requests/api.py", "requests.api", False)),
        ("/v/lib/python3.12/site-packages/flask/__init__.py", "/", ("flask/__init__.py", "flask", False)),
        ("/usr/lib/python3.11/logging/__init__.py", "/", ("logging/__init__.py", "logging", False)),
        (
            "C:\\Python311\\Lib\\site-packages\\django\\db\\utils.py", "C:/x",
            ("django/db/utils.py", "django.db.utils", False),
        ),
        ("C:\\Python311\\Lib\\json\\decoder.py", "C:/x", ("json/decoder.py", "json.decoder", False)),
        ("/srv/www/proj/shop/views.py", "/srv/www/proj", ("shop/views.py", "shop.views", True)),
        ("/app/myapp/views.py", "/", ("myapp/views.py", "myapp.views", True)),
        ("/app/manage.py", "/", ("manage.py", "manage", True)),
        ("myapp/models.py", "/", ("myapp/models.py", "myapp.models", True)),
        ("<frozen importlib._bootstrap>", "/", ("<frozen importlib._bootstrap>", "importlib._bootstrap", False)),
        ("<string>", "/", ("<string>", None, None)),
        ("/opt/templates/page-1.html", "/", ("templates/page-1.html", None, True)),
    ],
)
def test_path_info(path: str, cwd: str, expected: tuple[str, str | None, bool | None]) -> None:
    assert _path_info(path, cwd) == expected


def test_uncaught_in_a_real_interpreter(tmp_path: Any) -> None:
    """What an uncaught exception prints on stderr is the same format."""
    import subprocess

    script = tmp_path / "crash.py"
    script.write_text("def f():\n    raise ValueError('from a child')\n\nf()\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    parsed = parse(proc.stderr)
    assert parsed[-1]["type"] == "ValueError" and parsed[-1]["value"] == "from a child"
    assert [(f["function"], f["lineno"]) for f in parsed[-1]["frames"]] == [("<module>", 4), ("f", 2)]
