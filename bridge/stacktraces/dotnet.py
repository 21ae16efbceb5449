""".NET stack traces, as ``Exception.ToString()`` writes them (what OTel .NET records).

``Outer: msg`` then `` ---> Inner: msg`` for each inner exception, then the innermost's frames, and after
each ``--- End of inner exception stack trace ---`` the frames of the next outer one. The result is
innermost first, linked by ``"inner"``. Mono's ``at M () [0x00000] in file:line`` frames are read too;
``AggregateException``'s extra ``(Inner Exception #N)`` listings are skipped.
"""
from __future__ import annotations

import re

from bridge.stacktraces._common import Frame, ParsedException, basename, chain, frame, make_exception, split_at_last

__all__ = ["parse_dotnet", "NOT_IN_APP_PREFIXES"]

NOT_IN_APP_PREFIXES = (
    "System.", "Microsoft.", "Windows.", "Mono.", "Internal.", "Interop.", "Newtonsoft.", "NUnit.", "Xunit.",
    "Grpc.", "Google.Protobuf.", "Polly.", "Serilog.", "NLog.", "Dapper.", "Npgsql.", "StackExchange.",
    "MySql.", "MySqlConnector.", "OpenTelemetry.", "Castle.", "Autofac.", "AutoMapper.", "MediatR.",
)

_LINE_TAIL = re.compile(r":line (\d+)$")  # "in C:\\path\\File.cs:line 42"
_MONO_TAIL = re.compile(r" \[0x[0-9a-fA-F]+\] in (.+):(\d+)$")  # "M () [0x0001c] in /path/File.cs:42"
_INNER = re.compile(r"\s*---> (?P<rest>.*)$")
_END_INNER = re.compile(r"\s*--- End of inner exception stack trace ---")
_END_ASYNC = re.compile(r"\s*--- End of stack trace from previous location")
_HEADER = re.compile(
    r"(?:Unhandled [Ee]xception[.:] )?(?P<type>[\w.`+<>\[\],]+?)(?: \(0x[0-9A-Fa-f]{8}\))?(?:: (?P<msg>.*)|:)?$",
    re.DOTALL,
)
_METHOD = re.compile(r"(?P<owner>.*?)\.(?P<method>\.c?ctor|[^.]+)$")


def _frame(func_text: str, path: str | None, lineno: str | None) -> Frame:
    paren = func_text.find("(")
    name = (func_text[:paren] if paren > 0 else func_text).strip()
    m = _METHOD.match(name)
    owner, method = (m.group("owner"), m.group("method")) if m is not None else ("", name)
    short = owner.rsplit(".", 1)[-1]
    if path is not None and path.startswith("<"):  # Mono's "<filename unknown>"
        path, lineno = None, None
    return frame(
        filename=basename(path) if path else None, abs_path=path, lineno=int(lineno) if lineno else None,
        function=f"{short}.{method}" if short else method, module=owner or None,
        in_app=not (owner + ".").startswith(NOT_IN_APP_PREFIXES),
    )


def _parse_frame(rest: str) -> Frame:
    """``Ns.C.M(T a) in /p/F.cs:line 3``, ``Ns.C.M(T a)``, or Mono's ``Ns.C.M (T a) [0x0001c] in /p/F.cs:3``."""
    tail = _LINE_TAIL.search(rest)
    if tail is not None:
        split = rest.find(") in ")
        if 0 < split < tail.start():
            return _frame(rest[:split + 1], rest[split + 5:tail.start()], tail.group(1))
    mono = _MONO_TAIL.search(rest)
    if mono is not None:
        return _frame(rest[:mono.start()], mono.group(1), mono.group(2))
    return _frame(rest, None, None)


def parse_dotnet(text: str) -> list[ParsedException]:
    headers: list[list[str]] = []
    sections: list[list[Frame]] = [[]]  # frames per section, newest first, innermost section first
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line:
            continue
        stripped = line.lstrip()
        if stripped.startswith("at ") and len(stripped) > 3:
            sections[-1].append(_parse_frame(stripped[3:]))
            continue
        if stripped.startswith("---"):
            if _END_INNER.match(line):
                sections.append([])
                continue
            if _END_ASYNC.match(line):
                continue
            inner = _INNER.match(line)
            if inner is not None:
                if inner.group("rest").startswith("(Inner Exception #"):
                    break  # AggregateException repeats its inner exceptions after its own trace
                headers.append([inner.group("rest")])
                continue
        if not headers:
            headers.append([line])
        elif len(sections) == 1 and not sections[0]:
            headers[-1].append(line)  # a multi-line message
    if not headers and not any(sections):
        return []
    excs: list[ParsedException] = []
    for index, header in enumerate(reversed(headers or [[""]])):
        type_name, value = _split_header("\n".join(header))
        module, short = split_at_last(type_name, ".") if type_name else (None, "")
        frames = sections[index] if index < len(sections) else []
        excs.append(make_exception(short, module, value, frames[::-1]))
    return chain(excs, "inner")


def _split_header(text: str) -> tuple[str, str]:
    m = _HEADER.match(text)
    if m is None:
        return "", text
    return m.group("type"), m.group("msg") or ""
