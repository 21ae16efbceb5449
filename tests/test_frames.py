"""Frames: in-app rules, module-relative filenames, source context, frame caps and the adapter to the
stack-trace parsers (``bridge.stacktraces.parse``)."""
from __future__ import annotations

import json
import os
import sysconfig
from dataclasses import dataclass, field
from typing import Any

import pytest

import bridge.sentry.frames as frames_module
from bridge.sentry.context import ConvertOptions
from bridge.sentry.frames import (
    filename_for,
    frames_from_parsed,
    is_in_app,
    module_for_path,
    parse_stacktrace,
    source_context,
)

STDLIB = sysconfig.get_paths()["stdlib"]
BRIDGE_FILE = os.path.abspath(frames_module.__file__)
ROOT = "/srv/shop"


@pytest.mark.parametrize(
    ("abs_path", "module", "options", "language", "expected"),
    [
        (f"{ROOT}/shop/views.py", "shop.views", ConvertOptions(project_root=ROOT), "python", True),
        ("/elsewhere/tool.py", "tool", ConvertOptions(project_root=ROOT), "python", False),
        ("/elsewhere/tool.py", "tool", ConvertOptions(), "python", True),  # no root: not known to be foreign
        (f"{ROOT}/.venv/lib/python3.11/site-packages/flask/app.py", "flask.app", ConvertOptions(project_root=ROOT),
         "python", False),
        ("/usr/lib/python3/dist-packages/yaml/x.py", "yaml.x", ConvertOptions(), "python", False),
        (os.path.join(STDLIB, "json", "decoder.py"), "json.decoder", ConvertOptions(), "python", False),
        ("/usr/lib/python3.12/json/decoder.py", "json.decoder", ConvertOptions(), "python", False),  # another host
        ("C:\\Python312\\Lib\\json\\decoder.py", "json.decoder", ConvertOptions(), "python", False),
        ("<frozen importlib._bootstrap>", "importlib._bootstrap", ConvertOptions(), "python", False),
        (BRIDGE_FILE, "bridge.sentry.frames", ConvertOptions(project_root=os.getcwd()), "python", False),
        # The lists win over every path rule.
        (f"{ROOT}/.venv/lib/python3.11/site-packages/mylib/a.py", "mylib.a",
         ConvertOptions(in_app_include=("mylib",)), "python", True),
        (f"{ROOT}/shop/vendored/x.py", "shop.vendored.x",
         ConvertOptions(project_root=ROOT, in_app_exclude=("shop.vendored",)), "python", False),
        (f"{ROOT}/shop/vendoredness.py", "shop.vendoredness",
         ConvertOptions(project_root=ROOT, in_app_exclude=("shop.vendored",)), "python", True),  # prefix by dots
        # Other languages (received spans).
        (None, "java.util.concurrent.FutureTask", ConvertOptions(), "java", False),
        (None, "com.acme.billing.Charge", ConvertOptions(project_root=ROOT), "java", True),
        (None, "System.Net.Http.HttpClient", ConvertOptions(), "dotnet", False),
        ("/app/node_modules/express/lib/router.js", None, ConvertOptions(), "nodejs", False),
        ("node:internal/process/task_queues", None, ConvertOptions(), "nodejs", False),
        ("/app/src/server.js", None, ConvertOptions(project_root=ROOT), "nodejs", True),
        ("/usr/local/go/src/runtime/panic.go", "runtime", ConvertOptions(), "go", False),
        ("/root/go/pkg/mod/github.com/gin-gonic/gin@v1.9.1/context.go", None, ConvertOptions(), "go", False),
        ("/usr/lib/ruby/gems/3.2.0/gems/rack-3.0/lib/rack.rb", None, ConvertOptions(), "ruby", False),
    ],
)  # fmt: skip
def test_in_app(
    abs_path: str | None, module: str | None, options: ConvertOptions, language: str, expected: bool
) -> None:
    assert is_in_app(abs_path, module, options, language) is expected


@pytest.mark.parametrize(
    ("abs_path", "module", "filename"),
    [
        ("/srv/shop/shop/views.py", "shop.views", "shop/views.py"),
        ("/srv/shop/shop/__init__.py", "shop", "shop/__init__.py"),
        ("/srv/shop/manage.py", "__main__", "manage.py"),
        ("/srv/shop/x.py", None, "/srv/shop/x.py"),
        ("<frozen os>", "os", "<frozen os>"),
        ("C:\\app\\shop\\views.py", "shop.views", "shop/views.py"),
    ],
)
def test_filename_is_module_relative(abs_path: str, module: str | None, filename: str) -> None:
    assert filename_for(abs_path, module) == filename


def test_module_for_path_uses_the_longest_sys_path_entry() -> None:
    assert module_for_path(os.path.abspath(json.__file__)) == "json"
    assert module_for_path(os.path.join(STDLIB, "json", "decoder.py")) == "json.decoder"
    assert module_for_path(BRIDGE_FILE) == "bridge.sentry.frames"
    assert module_for_path("/nowhere/else/x.py") is None
    assert module_for_path("/srv/x.rb") is None


def test_source_context(tmp_path: Any) -> None:
    path = tmp_path / "m.py"
    path.write_text("".join(f"line {n}\r\n" for n in range(1, 21)))
    pre, line, post = source_context(str(path), 10) or ([], "", [])
    assert (pre, line, post) == ([f"line {n}" for n in range(5, 10)], "line 10", [f"line {n}" for n in range(11, 16)])
    pre, line, post = source_context(str(path), 2) or ([], "", [])
    assert (pre, line, post[-1]) == (["line 1"], "line 2", "line 7")
    assert source_context(str(path), 21) is None
    assert source_context(str(path), 0) is None
    assert source_context(str(tmp_path / "missing.py"), 1) is None


def test_parsed_frames_get_in_app_context_and_only_known_keys(tmp_path: Any) -> None:
    local = tmp_path / "app.py"
    local.write_text("a = 1\nb = 2\nraise SystemExit\n")
    parsed = [
        {"filename": "lib.py", "abs_path": "/usr/lib/python3.11/lib.py", "lineno": 3, "function": "f"},
        {"abs_path": str(local), "lineno": 3, "function": "<module>", "colno": 1, "bogus": "dropped"},
        {"filename": "/ghost/x.py", "lineno": 7, "function": "g", "in_app": True},  # a file not on this host
        "not a frame",
    ]
    stacktrace = frames_from_parsed(parsed, ConvertOptions(), "python")  # type: ignore[arg-type]
    assert stacktrace is not None
    lib, app, ghost = stacktrace["frames"]
    assert lib["in_app"] is False and "context_line" not in lib
    assert app["context_line"] == "raise SystemExit"
    assert (app["pre_context"], app["post_context"]) == (["a = 1", "b = 2"], [])
    assert app["colno"] == 1 and "bogus" not in app and app["in_app"] is True
    assert ghost == {"filename": "/ghost/x.py", "abs_path": "/ghost/x.py", "lineno": 7, "function": "g", "in_app": True}


def test_parsed_frames_are_capped_at_both_ends() -> None:
    parsed = [{"function": f"f{n}", "lineno": n, "filename": "x.js"} for n in range(250)]
    stacktrace = frames_from_parsed(parsed, ConvertOptions(), "nodejs")
    assert stacktrace is not None
    names = [frame["function"] for frame in stacktrace["frames"]]
    assert len(names) == 100 and names[0] == "f0" and names[49] == "f49" and names[50] == "f200"
    assert stacktrace["frames_omitted"] == [50, 200]
    assert frames_from_parsed([], ConvertOptions(), "python") is None


@dataclass
class ParsedAsDataclass:
    type: str
    module: str | None
    value: str
    frames: list[dict[str, Any]] = field(default_factory=list)


def test_adapter_accepts_dicts_and_dataclasses_and_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str | None]] = []

    def parse(text: str, language: str | None = None) -> list[Any]:
        calls.append((text, language))
        if text == "explode":
            raise ValueError("parser bug")
        return [
            {"type": "KeyError", "module": None, "value": "'a'", "frames": [{"function": "f"}], "source": "__cause__"},
            ParsedAsDataclass("Boom", "app", "b"),
            {"type": 3, "value": None, "frames": "nope", "source": "sideways"},
        ]

    monkeypatch.setattr(frames_module, "_parser", [parse])
    first, second, third = parse_stacktrace("trace", "python")
    assert calls == [("trace", "python")]
    assert (first.type, first.module, first.value, first.frames, first.source) == (
        "KeyError", None, "'a'", [{"function": "f"}], "__cause__"
    )  # fmt: skip
    assert (second.type, second.module, second.value, second.frames, second.source) == ("Boom", "app", "b", [], None)
    assert (third.type, third.value, third.frames, third.source) == ("", "", [], None)
    assert parse_stacktrace("explode", "java") == []
    assert parse_stacktrace("", "java") == [] and len(calls) == 2

    monkeypatch.setattr(frames_module, "_parser", [None])  # bridge.stacktraces not installed
    assert parse_stacktrace("trace", "python") == []
