"""Ruby backtraces (hand-written samples: no Ruby here)."""
from __future__ import annotations

from bridge.stacktraces import detect_language, parse
from tests.stacktrace_samples import sample


def test_ruby_34_with_cause() -> None:
    text = sample("ruby34_cause.txt")
    assert detect_language(text) == "ruby"
    cause, exc = parse(text, "ruby", exception_type="Shop::PaymentError", exception_message="card declined")
    assert (exc["module"], exc["type"], exc["value"]) == ("Shop", "PaymentError", "card declined")
    assert exc["relation"] is None
    assert (cause["module"], cause["type"], cause["relation"]) == ("Net", "ReadTimeout", "caused_by")
    assert cause["value"] == "Net::ReadTimeout with #<TCPSocket:(closed)>"
    assert [(f["function"], f["lineno"], f["in_app"]) for f in exc["frames"]] == [
        ("<main>", 8, True),
        ("Rack::Builder#call", 277, False),
        ("Shop::Checkout#call", 10, True),
        ("Kernel#loop", 168, False),
        ("block in Shop::Checkout#call", 12, True),
        ("Shop::Checkout#charge", 27, True),
    ]
    top = exc["frames"][-1]
    assert top == {
        "filename": "/srv/app/lib/shop/checkout.rb", "abs_path": "/srv/app/lib/shop/checkout.rb", "lineno": 27,
        "function": "Shop::Checkout#charge", "module": "Shop::Checkout", "in_app": True,
    }
    assert exc["frames"][-2]["module"] == "Shop::Checkout"
    assert len(cause["frames"]) == 9
    assert [f["in_app"] for f in cause["frames"][-3:]] == [True, False, False]
    assert cause["frames"][-3]["module"] == "Shop::Gateway"


def test_ruby_33_backticks_and_multiline_message() -> None:
    (exc,) = parse(sample("ruby33_multiline.txt"))
    assert (exc["type"], exc["module"]) == ("KeyError", None)
    assert exc["value"] == "missing keys:\n  - database_url\n  - secret_key_base"
    assert [(f["function"], f["lineno"]) for f in exc["frames"]] == [
        ("<main>", 3), ("run", 28), ("load", 8), ("each", 8), ("block in load", 9), ("fetch!", 14),
    ]
    assert exc["frames"][1]["in_app"] is False and exc["frames"][0]["filename"] == "report.rb"


def test_ruby_27_bottom_order() -> None:
    text = sample("ruby27_bottom.txt")
    assert detect_language(text) == "ruby"
    (exc,) = parse(text)
    assert (exc["type"], exc["value"]) == ("ZeroDivisionError", "divided by 0")
    assert [(f["function"], f["lineno"]) for f in exc["frames"]] == [
        ("<main>", 9), ("each", 9), ("block in <main>", 10), ("average", 5), ("/", 5),
    ]


def test_messages_ruby_prints_specially() -> None:
    (exc,) = parse("app.rb:3:in 'Object#run': unhandled exception\n\tfrom app.rb:7:in '<main>'\n", "ruby")
    assert (exc["type"], exc["value"]) == ("RuntimeError", "")
    (exc,) = parse("app.rb:3:in 'Object#run': ArgumentError\n\tfrom app.rb:7:in '<main>'\n", "ruby")
    assert (exc["type"], exc["value"]) == ("ArgumentError", "")
    assert exc["frames"][-1]["module"] == "Object"
