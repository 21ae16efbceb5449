"""JVM stack traces, as ``Throwable.printStackTrace()`` writes them (what OTel Java records).

The outermost exception is printed first and its causes after it (``Caused by:``); the result is
reversed so the root cause comes first. ``... N more`` is expanded from the enclosing trace, as the JVM
elided exactly those frames. ``Suppressed:`` blocks are skipped. Kotlin, Scala and Groovy print alike.
"""
from __future__ import annotations

import re

from bridge.stacktraces._common import Frame, ParsedException, chain, frame, make_exception, split_at_last

__all__ = ["parse_java", "NOT_IN_APP_PREFIXES"]

NOT_IN_APP_PREFIXES = (
    "java.", "javax.", "jdk.", "sun.", "com.sun.", "kotlin.", "kotlinx.", "scala.", "groovy.", "clojure.",
    "org.springframework.", "org.apache.", "org.hibernate.", "org.eclipse.", "org.glassfish.", "org.junit.",
    "io.netty.", "io.grpc.", "io.micrometer.", "io.opentelemetry.", "io.reactivex.", "reactor.",
    "com.google.", "com.fasterxml.", "ch.qos.logback.", "org.slf4j.", "android.", "androidx.", "dalvik.",
    "okhttp3.", "retrofit2.", "akka.", "io.undertow.", "org.jboss.", "io.quarkus.", "io.micronaut.",
)

_HEADER = re.compile(
    r'(?:Exception in thread "(?P<thread>.*?)" |Caused by: )?'
    r"(?P<cls>[A-Za-z_$][\w$]*(?:[./][A-Za-z_$][\w$]*)*)(?:: ?(?P<msg>.*))?$",
    re.DOTALL,
)
# Inside the parentheses: "File.java:12", "File.java", "Native Method", "Unknown Source" (never empty, no
# spaces otherwise: that keeps .NET's "at Ns.C.M(String s)" lines out).
_FRAME = re.compile(
    r"\s*at (?P<where>[^\s()]+)\((?P<src>Native Method|Unknown Source(?::\d+)?|Coroutine boundary|[^()\s]+)\)\s*$"
)
_MORE = re.compile(r"\s*\.\.\. (\d+) (?:more|common frames omitted)\s*$")
_SUPPRESSED = re.compile(r"\s+Suppressed: ")
_NEXT_TRACE = re.compile(r'Exception in thread "|[a-z][\w$]*(?:\.[\w$]+)*\.[A-Z][\w$]*(?:$|: )')
_SOURCE = re.compile(r"(?P<file>[^:]+?)(?::(?P<line>\d+))?")


def _in_app(module: str) -> bool:
    return not module.startswith(NOT_IN_APP_PREFIXES)


def _parse_frame(where: str, src: str) -> Frame:
    package: str | None = None
    slash = where.rfind("/")
    if slash >= 0:
        prefix, where = where[:slash], where[slash + 1:]
        # [classLoaderName/][moduleName@version/]: "app//" is a loader alone, "java.base/" a module alone.
        parts = prefix.split("/")
        module_name = parts[1] if len(parts) >= 2 else parts[0]
        package = module_name.split("@", 1)[0] or None
    cls, method = split_at_last(where, ".")
    cls = cls or ""
    short_cls = cls.rsplit(".", 1)[-1]
    function = f"{short_cls}.{method}" if short_cls else method
    filename: str | None = None
    lineno: int | None = None
    if src and src not in ("Native Method", "Unknown Source"):
        m = _SOURCE.fullmatch(src)
        if m is not None:
            filename = m.group("file")
            lineno = int(m.group("line")) if m.group("line") else None
        elif src.startswith("Unknown Source:"):
            lineno = int(src[15:]) if src[15:].isdigit() else None
    in_app = _in_app(cls) and not (package or "").startswith(("java.", "jdk."))
    return frame(
        filename=filename, abs_path=filename, lineno=lineno, function=function, module=cls or None,
        package=package, in_app=in_app,
    )


class _Block:
    __slots__ = ("cls", "msg_lines", "frames", "more")

    def __init__(self, cls: str, msg: str | None) -> None:
        self.cls = cls
        self.msg_lines: list[str] = [msg] if msg is not None else []
        self.frames: list[Frame] = []  # newest first, as printed
        self.more = 0


def _start(line: str) -> _Block:
    m = _HEADER.match(line.strip())
    if m is None:
        return _Block("", line.strip())
    return _Block(m.group("cls").replace("/", "."), m.group("msg"))


def parse_java(text: str) -> list[ParsedException]:
    blocks: list[_Block] = []
    current: _Block | None = None
    skipping = False  # inside a Suppressed: block
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        stripped = line.lstrip()
        if stripped.startswith("at ") and "(" in stripped:
            if skipping:
                continue
            m = _FRAME.match(line)
            if m is not None:
                if current is None:
                    current = _Block("", None)
                    blocks.append(current)
                current.frames.append(_parse_frame(m.group("where"), m.group("src")))
                continue
        if stripped.startswith("..."):
            more = _MORE.match(line)
            if more is not None:
                if current is not None and not skipping:
                    current.more = int(more.group(1))
                continue
        if _SUPPRESSED.match(line):
            skipping = True
            continue
        if line.startswith("Caused by: ") or (current is None and not skipping):
            skipping = False
            current = _start(line)
            blocks.append(current)
            continue
        if skipping:
            continue
        if current is not None and not current.frames:
            current.msg_lines.append(line)  # a multi-line message
        elif current is not None and _NEXT_TRACE.match(line):
            break  # another, unrelated stack trace: keep the first
    _expand_more(blocks)
    excs: list[ParsedException] = []
    for block in reversed(blocks):
        module, short = split_at_last(block.cls, ".")
        excs.append(make_exception(short, module, "\n".join(block.msg_lines), block.frames[::-1]))
    return chain(excs, "caused_by")


def _expand_more(blocks: list[_Block]) -> None:
    """``... N more``: the last N frames are the enclosing trace's last N frames."""
    for enclosing, block in zip(blocks, blocks[1:]):
        n = min(block.more, len(enclosing.frames))
        if n > 0:
            block.frames.extend(dict(f) for f in enclosing.frames[-n:])
