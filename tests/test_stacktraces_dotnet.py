""".NET Exception.ToString() text (hand-written samples: no .NET SDK here)."""
from __future__ import annotations

from bridge.stacktraces import detect_language, parse
from tests.stacktrace_samples import sample


def test_inner_exception_across_awaits() -> None:
    text = sample("dotnet_inner.txt")
    assert detect_language(text) == "dotnet"
    inner, outer = parse(text, "dotnet")
    assert (inner["module"], inner["type"], inner["relation"]) == ("System.Net.Http", "HttpRequestException", "inner")
    assert inner["value"] == "Response status code does not indicate success: 503 (Service Unavailable)."
    assert (outer["module"], outer["type"], outer["value"], outer["relation"]) == (
        "System", "InvalidOperationException", "Could not place order 1234.", None
    )
    assert [(f["function"], f.get("lineno"), f["in_app"]) for f in inner["frames"]] == [
        ("OrderService.PlaceAsync", 31, True),
        ("PaymentClient.ChargeAsync", 48, True),
        ("HttpResponseMessage.EnsureSuccessStatusCode", None, False),
    ]
    charge = inner["frames"][1]
    assert charge == {
        "filename": "PaymentClient.cs", "abs_path": "/src/Shop/Payments/PaymentClient.cs", "lineno": 48,
        "function": "PaymentClient.ChargeAsync", "module": "Shop.Payments.PaymentClient", "in_app": True,
    }
    assert [f["function"] for f in outer["frames"]] == [
        "ControllerActionInvoker.<InvokeActionMethodAsync>g__Awaited|12_0",
        "TaskOfIActionResultExecutor.Execute",
        "OrdersController.Post",
        "OrderService.PlaceAsync",
    ]
    assert [f["in_app"] for f in outer["frames"]] == [False, False, True, True]


def test_console_crash_with_three_levels() -> None:
    win32, item, aggregate = parse(sample("dotnet_console.txt"))
    assert (aggregate["module"], aggregate["type"]) == ("System", "AggregateException")
    assert aggregate["value"] == "One or more errors occurred. (Could not create item.\nCheck the item name.)"
    assert (item["module"], item["type"], item["value"]) == (
        "Inventory", "ItemException", "Could not create item.\nCheck the item name."
    )
    assert (win32["type"], win32["value"]) == ("Win32Exception", "The system cannot find the file specified.")
    assert [p["relation"] for p in (win32, item, aggregate)] == ["inner", "inner", None]
    ctor = win32["frames"][0]
    assert (ctor["function"], ctor["module"], ctor["lineno"]) == ("Item..ctor", "Inventory.Item", 9)
    assert (ctor["filename"], ctor["abs_path"]) == ("Item.cs", "C:\\work\\Inventory\\Item.cs")
    assert [f["function"] for f in win32["frames"]] == ["Item..ctor", "Storage.Open"]
    assert [f["function"] for f in item["frames"]][-2:] == ["<>c.<Main>b__0_0", "Item..ctor"]
    assert item["frames"][-2]["module"] == "Inventory.Program.<>c"
    assert [f["function"] for f in aggregate["frames"]] == ["Program.Main", "Task.Wait", "Task.ThrowIfExceptional"]


def test_aggregate_listing_of_other_inner_exceptions_is_skipped() -> None:
    # .NET 8 AggregateException.ToString() with two inner exceptions: the second is listed after the trace.
    text = (
        "System.AggregateException: One or more errors occurred. (a) (b)\n"
        " ---> System.Exception: a\n"
        "   at Jobs.Runner.<>c.<Run>b__1_0() in /src/Jobs/Runner.cs:line 12\n"
        "   --- End of inner exception stack trace ---\n"
        "   at Jobs.Runner.Run() in /src/Jobs/Runner.cs:line 20\n"
        " ---> (Inner Exception #1) System.Exception: b\n"
        "   at Jobs.Runner.<>c.<Run>b__1_1() in /src/Jobs/Runner.cs:line 13<---\n"
    )
    a, agg = parse(text)
    assert (a["value"], agg["type"]) == ("a", "AggregateException")
    assert [f["lineno"] for f in a["frames"]] == [12] and [f["lineno"] for f in agg["frames"]] == [20]


def test_mono_and_unity_frames() -> None:
    text = (
        "System.NullReferenceException: Object reference not set to an instance of an object\n"
        "  at Game.Player.Update () [0x0001c] in /Users/dev/Game/Assets/Player.cs:42 \n"
        "  at Game.Loop.Tick () [0x00000] in <filename unknown>:0 \n"
    )
    (exc,) = parse(text, "dotnet")
    tick, update = exc["frames"]
    assert (update["function"], update["lineno"], update["filename"]) == ("Player.Update", 42, "Player.cs")
    assert tick == {"function": "Loop.Tick", "module": "Game.Loop", "in_app": True}


def test_exception_type_from_the_span_event() -> None:
    (exc,) = parse("   at Foo.Bar.Baz() in /x/Bar.cs:line 3\n", "dotnet", exception_type="Foo.BarException",
                   exception_message="nope")
    assert (exc["module"], exc["type"], exc["value"]) == ("Foo", "BarException", "nope")
    assert exc["frames"][0]["lineno"] == 3
