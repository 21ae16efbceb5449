"""Go panics and runtime.Stack() text (hand-written samples: no Go toolchain here)."""
from __future__ import annotations

import pytest

from bridge.stacktraces import detect_language, parse
from bridge.stacktraces.go import split_go_function
from tests.stacktrace_samples import sample


def test_panic_with_repanic() -> None:
    text = sample("go_panic.txt")
    assert detect_language(text) == "go"
    (exc,) = parse(text, "go")
    assert (exc["type"], exc["value"]) == ("panic", "checkout aborted: order 1234: payment declined")
    assert [(f.get("module"), f["function"], f["lineno"], f["in_app"]) for f in exc["frames"]] == [
        ("main", "main", 25, True),
        ("main", "handle", 18, True),
        ("main", "(*Checkout).Pay", 44, True),
        (None, "panic", 770, False),
        ("main", "(*Checkout).Pay.func1", 38, True),
    ]
    assert exc["frames"][-1]["filename"] == "checkout.go"
    assert exc["frames"][-1]["abs_path"] == "/home/dev/shop/checkout.go"


def test_http_server_panic_in_a_goroutine() -> None:
    (exc,) = parse(sample("go_http.txt"), exception_type="runtime.Error")
    assert exc["value"] == "runtime error: invalid memory address or nil pointer dereference"
    assert exc["type"] == "runtime.Error"
    frames = {f["function"]: f for f in exc["frames"]}
    assert exc["frames"][0]["function"] == "(*Server).Serve"  # "created by", the oldest
    assert frames["(*Store).Get"]["module"] == "github.com/acme/shop/internal/store"
    assert frames["(*Store).Get"]["in_app"] is True
    assert frames["(*Mux).routeHTTP"]["module"] == "github.com/go-chi/chi/v5"
    assert frames["(*Mux).routeHTTP"]["in_app"] is False
    assert frames["(*decoder).unmarshal"]["module"] == "gopkg.in/yaml.v3"
    assert frames["HandlerFunc.ServeHTTP"]["module"] == "net/http"
    assert frames["HandlerFunc.ServeHTTP"]["in_app"] is False
    assert exc["frames"][-1]["function"] == "(*conn).serve.func1"


def test_otel_runtime_stack_cut_at_2048_bytes() -> None:
    (exc,) = parse(sample("go_otel_stack.txt"), "go", exception_type="*errors.errorString",
                   exception_message="order not found")
    assert (exc["type"], exc["module"], exc["value"]) == ("*errors.errorString", None, "order not found")
    assert [f["function"] for f in exc["frames"]] == [
        "serverHandler.ServeHTTP", "HandlerFunc.ServeHTTP", "(*api).orders", "(*api).orders.func1",
        "fetchOrder", "(*recordingSpan).RecordError", "recordStackTrace",
    ]
    sdk = exc["frames"][-1]
    assert sdk["module"] == "go.opentelemetry.io/otel/sdk/trace" and sdk["in_app"] is False
    assert exc["frames"][3]["lineno"] == 30 and exc["frames"][4]["lineno"] == 44


def test_nil_dereference_with_signal_line() -> None:
    text = (
        "panic: runtime error: invalid memory address or nil pointer dereference\n"
        "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x48f1b6]\n\n"
        "goroutine 1 [running]:\n"
        "main.(*Cache).Get(...)\n\t/home/dev/cache/cache.go:12\n"
        "main.main()\n\t/home/dev/cache/main.go:9 +0x16\n"
        "exit status 2\n"
    )
    (exc,) = parse(text)
    assert exc["value"] == "runtime error: invalid memory address or nil pointer dereference"
    assert [(f["function"], f["lineno"]) for f in exc["frames"]] == [("main", 9), ("(*Cache).Get", 12)]


def test_only_the_first_goroutine() -> None:
    text = (
        "fatal error: all goroutines are asleep - deadlock!\n\n"
        "goroutine 1 [chan receive]:\nmain.main()\n\t/app/main.go:7 +0x2d\n\n"
        "goroutine 6 [select]:\nmain.worker()\n\t/app/worker.go:20 +0x40\n"
    )
    (exc,) = parse(text, "go")
    assert (exc["type"], exc["value"]) == ("fatal error", "all goroutines are asleep - deadlock!")
    assert [f["function"] for f in exc["frames"]] == ["main"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("main.main", ("main", "main")),
        ("main.(*T).M", ("main", "(*T).M")),
        ("github.com/x/y.(*T).M", ("github.com/x/y", "(*T).M")),
        ("github.com/x/y/v2.F.func1.2", ("github.com/x/y/v2", "F.func1.2")),
        ("gopkg.in/yaml%2ev3.unmarshal", ("gopkg.in/yaml.v3", "unmarshal")),
        ("main.Map[...]", ("main", "Map[...]")),
        ("panic", (None, "panic")),
    ],
)
def test_split_go_function(name: str, expected: tuple[str | None, str]) -> None:
    assert split_go_function(name) == expected
