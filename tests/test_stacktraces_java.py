"""JVM stack traces: a real Java program (tests/data/stacktraces/Crash.java), compiled and run here.

It prints ``printStackTrace()`` text and then every throwable's real ``getStackTrace()``; the parsed
frames (with ``... N more`` expanded) must equal the real ones.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bridge.stacktraces import detect_language, parse

DATA = Path(__file__).parent / "data" / "stacktraces"

pytestmark = pytest.mark.skipif(
    shutil.which("javac") is None or shutil.which("java") is None, reason="needs a JDK (javac and java)"
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, tuple[str, list[Any]]], str]:
    out = tmp_path_factory.mktemp("java")
    subprocess.run(["javac", "-d", str(out), str(DATA / "Crash.java")], check=True, timeout=120)
    proc = subprocess.run(
        ["java", "-cp", str(out), "Crash"], capture_output=True, text=True, timeout=120, check=False
    )
    scenarios: dict[str, tuple[str, list[Any]]] = {}
    for chunk in proc.stdout.split("=====TRACE ")[1:]:
        name, rest = chunk.split("\n", 1)
        trace, dump = rest.split("=====DUMP\n", 1)
        chain: list[Any] = []
        for line in dump.split("=====END", 1)[0].splitlines():
            kind, *fields = line.split("|")
            if kind == "E":
                chain.append({"class": fields[0], "message": fields[1].replace("\\n", "\n"), "frames": []})
            else:
                chain[-1]["frames"].append(fields)
        scenarios[name] = (trace, chain)
    return scenarios, proc.stderr


def _expected_frames(real: list[list[str]]) -> list[tuple[Any, ...]]:
    out = []
    for cls, method, filename, line, module in real:
        native = int(line) == -2
        out.append((
            cls, f"{cls.rsplit('.', 1)[-1]}.{method}",
            None if native or filename == "null" else filename,
            int(line) if int(line) > 0 else None,
            None if module == "null" else module,
        ))
    return out[::-1]  # oldest first


def _compare(text: str, chain: list[Any]) -> list[Any]:
    assert detect_language(text) == "java"
    parsed = parse(text, "java")
    assert len(parsed) == len(chain)
    for got, real in zip(parsed, reversed(chain)):  # parsed: root cause first
        module, _, short = real["class"].rpartition(".")
        assert (got["module"], got["type"]) == (module, short)
        assert got["value"] == ("" if real["message"] == "null" else real["message"])
        assert [
            (f.get("module"), f.get("function"), f.get("filename"), f.get("lineno"), f.get("package"))
            for f in got["frames"]
        ] == _expected_frames(real["frames"])
    assert [p["relation"] for p in parsed] == ["caused_by"] * (len(parsed) - 1) + [None]
    return parsed


def test_cause_chain_with_suppressed_and_more(run: Any) -> None:
    text, chain = run[0]["chain"]
    assert "Suppressed:" in text and "... 2 more" in text
    parsed = _compare(text, chain)
    assert [p["type"] for p in parsed] == ["IllegalArgumentException", "IllegalStateException", "RuntimeException"]
    assert parsed[0]["value"] == "no such id: 42\nsecond line of the message"
    assert all(f["in_app"] for p in parsed for f in p["frames"])


def test_lambda_and_jdk_module_frames(run: Any) -> None:
    text, chain = run[0]["lambda"]
    parsed = _compare(text, chain)
    frames = parsed[-1]["frames"]
    jdk = [f for f in frames if f["module"].startswith("java.")]
    assert jdk and all(f["in_app"] is False and f["package"] == "java.base" for f in jdk)
    assert frames[-1]["function"] == "Crash.npe"


def test_native_methods_and_reflection(run: Any) -> None:
    text, chain = run[0]["reflection"]
    parsed = _compare(text, chain)
    assert parsed[-1]["type"] == "InvocationTargetException" and parsed[-1]["value"] == ""
    native = [f for f in parsed[0]["frames"] if f["function"].endswith("invoke0")]
    assert native and "lineno" not in native[0] and native[0]["in_app"] is False


def test_uncaught_in_a_thread(run: Any) -> None:
    stderr = run[1]
    assert 'Exception in thread "worker-1"' in stderr
    parsed = parse(stderr)
    assert len(parsed) == 1
    assert (parsed[0]["module"], parsed[0]["type"], parsed[0]["value"]) == (
        "java.lang", "IllegalStateException", "in a worker"
    )
    assert [f["function"] for f in parsed[0]["frames"]] == ["Thread.run", "Crash.lambda$main$1"]


def test_module_versions_loaders_and_unknown_sources() -> None:
    # Hand-written in JDK 17's StackTraceElement.toString() forms: loader/module@version/class, "app//",
    # "Unknown Source", and a Kotlin file; logback's "common frames omitted" for the elision.
    text = (
        "com.acme.shop.CheckoutException: card declined\n"
        "\tat com.acme.shop.Checkout.pay(Checkout.kt:88)\n"
        "\tat app//com.acme.shop.Api.post(Api.java:12)\n"
        "\tat webapp/com.acme.lib@2.1.0/com.acme.lib.Retry.run(Unknown Source)\n"
        "\tat org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:897)\n"
        "\tat java.base/java.lang.Thread.run(Thread.java:840)\n"
        "Caused by: java.net.SocketTimeoutException: Read timed out\n"
        "\tat java.base/sun.nio.ch.NioSocketImpl.timedRead(NioSocketImpl.java:288)\n"
        "\tat com.acme.shop.Gateway.charge(Gateway.java:40)\n"
        "\t... 5 common frames omitted\n"
    )
    parsed = parse(text, "java", exception_type="com.acme.shop.CheckoutException")
    cause, top = parsed
    assert cause["type"] == "SocketTimeoutException" and cause["module"] == "java.net"
    assert len(cause["frames"]) == 7 and cause["frames"][:5] == top["frames"]
    by_fn = {f["function"]: f for f in top["frames"]}
    assert by_fn["Checkout.pay"]["filename"] == "Checkout.kt" and by_fn["Checkout.pay"]["in_app"] is True
    assert "package" not in by_fn["Api.post"]
    assert by_fn["Retry.run"]["package"] == "com.acme.lib" and "lineno" not in by_fn["Retry.run"]
    assert by_fn["FrameworkServlet.service"]["in_app"] is False
    assert (top["type"], top["module"]) == ("CheckoutException", "com.acme.shop")
