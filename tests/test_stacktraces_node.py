"""V8 stack traces: tests/data/stacktraces/throw.js run by the real ``node``, its ``err.stack`` (what
OTel JS records) and ``util.inspect(err)`` (``[cause]`` chains) parsed back."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bridge.stacktraces import detect_language, parse

DATA = Path(__file__).parent / "data" / "stacktraces"
SCRIPT = DATA / "throw.js"

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="needs node")


def _line(marker: str, path: Path = SCRIPT) -> int:
    for number, text in enumerate(path.read_text().splitlines(), 1):
        if re.search(rf"// @{re.escape(marker)}$", text):
            return number
    raise AssertionError(marker)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    lib = tmp_path_factory.mktemp("node") / "node_modules" / "callback-lib"
    lib.mkdir(parents=True)
    (lib / "index.js").write_text("module.exports = function callLater(fn) {\n  return fn();\n};\n")
    env = dict(os.environ, NODE_PATH=str(lib.parent))
    proc = subprocess.run(["node", str(SCRIPT)], capture_output=True, text=True, timeout=60, env=env, check=True)
    return {d["name"]: d for d in map(json.loads, proc.stdout.splitlines())}


def _where(frames: list[Any]) -> list[tuple[Any, ...]]:
    return [(f.get("function"), f.get("abs_path"), f.get("lineno")) for f in frames]


def test_stack_of_an_error_with_cause(runs: dict[str, Any]) -> None:
    stack = runs["cause"]["stack"]
    assert detect_language(stack) == "nodejs"
    (exc,) = parse(stack, "nodejs")
    assert (exc["type"], exc["value"], exc["module"]) == ("RangeError", "startup failed", None)
    frames = exc["frames"]
    assert frames[-1] == {
        "filename": str(SCRIPT), "abs_path": str(SCRIPT), "lineno": _line("top"), "colno": 11,
        "function": "startApp", "in_app": True,
    }
    assert frames[-2]["function"] == "main"
    internal = [f for f in frames if f["abs_path"].startswith("node:")]
    assert internal and all(f["in_app"] is False for f in internal)
    assert frames[0]["function"] == "<anonymous>"  # "at node:internal/main/run_main_module:28:49"


def test_inspect_output_gives_the_cause_chain(runs: dict[str, Any]) -> None:
    run = runs["cause"]
    assert "[cause]: Error: settings failed" in run["inspect"]
    assert "lines matching cause stack trace" in run["inspect"]
    parsed = parse(run["inspect"])
    assert [(p["type"], p["value"], p["relation"]) for p in parsed] == [
        ("TypeError", "config missing\nsecond line", "caused_by"),
        ("Error", "settings failed", "caused_by"),
        ("RangeError", "startup failed", None),
    ]
    # "... N lines matching cause stack trace ..." expanded back: each equals that error's own stack
    for got, stack in zip(parsed, reversed(run["chain"])):
        (alone,) = parse(stack)
        assert got["frames"] == alone["frames"]
    assert _where(parsed[0]["frames"][-2:]) == [
        ("loadSettings", str(SCRIPT), _line("load-calls")), ("readConfig", str(SCRIPT), _line("root")),
    ]


def test_constructor_and_static_method(runs: dict[str, Any]) -> None:
    (exc,) = parse(runs["constructor"]["stack"])
    assert _where(exc["frames"][-2:]) == [
        ("Widget.build", str(SCRIPT), _line("build")), ("new Widget", str(SCRIPT), _line("ctor")),
    ]


def test_async_frames(runs: dict[str, Any]) -> None:
    (exc,) = parse(runs["async"]["stack"], "nodejs")
    assert exc["value"] == "user 7 not found"
    assert [f["function"] for f in exc["frames"]] == ["main", "handler", "fetchUser"]
    assert exc["frames"][1]["lineno"] == _line("async-outer")
    assert exc["frames"][2]["lineno"] == _line("async-inner")


def test_node_modules_are_not_in_app(runs: dict[str, Any]) -> None:
    (exc,) = parse(runs["node_modules"]["stack"], "nodejs")
    assert exc["type"] == "SyntaxError"
    lib = [f for f in exc["frames"] if "node_modules" in f["abs_path"]]
    assert [(f["function"], f["lineno"], f["in_app"]) for f in lib] == [("callLater", 2, False)]
    assert exc["frames"][-1]["function"] == "fromLibrary" and exc["frames"][-1]["in_app"] is True
    assert exc["frames"][-1]["lineno"] == _line("lib-callback")


def test_internal_modules_and_properties(runs: dict[str, Any]) -> None:
    for text in (runs["internal"]["stack"], runs["internal"]["inspect"]):
        (exc,) = parse(text)
        assert exc["value"].startswith("ENOENT: no such file or directory")
        assert [(f["function"], f["abs_path"], f["in_app"]) for f in exc["frames"][-2:]] == [
            ("Object.readFileSync", "node:fs", False), ("Object.openSync", "node:fs", False),
        ]


def test_anonymous_and_native_frames(runs: dict[str, Any]) -> None:
    (exc,) = parse(runs["anonymous"]["stack"])
    main, native, arrow = exc["frames"]
    assert (native["function"], native["filename"], native["in_app"]) == ("Array.map", "<anonymous>", False)
    assert (arrow["function"], arrow["lineno"], arrow["colno"]) == ("<anonymous>", _line("arrow"), 28)


def test_es_module_urls(runs: dict[str, Any]) -> None:
    (exc,) = parse(runs["esm"]["stack"])
    url = (DATA / "throw.mjs").as_uri()
    top = exc["frames"][-1]
    assert (top["abs_path"], top["filename"], top["function"]) == (url, str(DATA / "throw.mjs"), "explode")
    assert top["lineno"] == _line("esm", DATA / "throw.mjs") and top["in_app"] is True
    assert [f["function"] for f in exc["frames"] if f.get("in_app")] == ["main", "<anonymous>", "explode"]


def test_eval_node_error_codes_and_browsers() -> None:
    # Hand-written in Node 20's formats: eval origins and internal errors with a code in brackets.
    text = (
        "TypeError [ERR_INVALID_ARG_TYPE]: The \"path\" argument must be of type string. Received undefined\n"
        "    at eval (eval at run (/srv/app/sandbox.js:12:5), <anonymous>:1:7)\n"
        "    at async Promise.all (index 0)\n"
        "    at run (/srv/app/sandbox.js:12:5)\n"
    )
    (exc,) = parse(text)
    assert exc["type"] == "TypeError" and exc["value"].startswith('The "path" argument')
    run, promise_all, ev = exc["frames"]
    assert (ev["function"], ev["abs_path"], ev["lineno"], ev["colno"]) == ("eval", "/srv/app/sandbox.js", 12, 5)
    assert promise_all == {"function": "Promise.all", "in_app": False}
    # Firefox / Safari (webjs): "fn@url:line:col", no header line
    firefox = "handleClick@https://shop.example/static/app.js:10:15\n@https://shop.example/static/app.js:30:1\n"
    (exc,) = parse(firefox, "webjs", exception_type="Error", exception_message="boom")
    assert [(f["function"], f["lineno"]) for f in exc["frames"]] == [("<anonymous>", 30), ("handleClick", 10)]
    assert (exc["type"], exc["value"]) == ("Error", "boom")
