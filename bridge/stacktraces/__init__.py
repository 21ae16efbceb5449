"""Stack-trace text (an OTel ``exception.stacktrace`` attribute) → Sentry exception values.

``parse(text, language)`` returns the chained exceptions OLDEST (root cause) FIRST, the last being the
one raised; each holds Sentry frames oldest first. It never raises: at worst it returns a single
exception without frames built from ``exception_type`` / ``exception_message``.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from bridge.stacktraces._common import ParsedException, make_exception, split_at_last
from bridge.stacktraces.dotnet import parse_dotnet
from bridge.stacktraces.go import parse_go
from bridge.stacktraces.java import parse_java
from bridge.stacktraces.node import parse_node
from bridge.stacktraces.python import parse_python, split_python_type
from bridge.stacktraces.ruby import parse_ruby

__all__ = ["ParsedException", "detect_language", "parse", "to_sentry_values"]

_Parser = Callable[[str], "list[ParsedException]"]
_PARSERS: dict[str, _Parser] = {
    "python": parse_python,
    "java": parse_java,
    "nodejs": parse_node,
    "go": parse_go,
    "dotnet": parse_dotnet,
    "ruby": parse_ruby,
}
_ALIASES = {
    "py": "python", "python3": "python",
    "jvm": "java", "kotlin": "java", "scala": "java", "groovy": "java", "clojure": "java",
    "node": "nodejs", "node.js": "nodejs", "js": "nodejs", "javascript": "nodejs", "typescript": "nodejs",
    "webjs": "nodejs", "deno": "nodejs", "bun": "nodejs",
    "golang": "go",
    ".net": "dotnet", "csharp": "dotnet", "c#": "dotnet", "fsharp": "dotnet", "f#": "dotnet",
    "rb": "ruby",
}

# Lines that point at one language, with a weight. Scored on at most the first _SCAN characters.
_SCAN = 20_000
_LINE = 400
_JVM_SOURCES = (
    ".java:", ".java)", ".kt:", ".kt)", ".scala:", ".groovy:", ".clj:", "(Native Method)", "(Unknown Source)",
)
# (language, literals of which one must occur for the pattern to match, pattern, weight)
_SIGNS: list[tuple[str, tuple[str, ...], re.Pattern[str], int]] = [
    ("python", ("Traceback (most",), re.compile(r"^Traceback \(most recent call last\):$", re.M), 5),
    ("python", ('File "',), re.compile(r'^[ \t]*File "[^"\n]*", line \d+, in ', re.M), 3),
    ("ruby", ("from ",), re.compile(r"^[ \t]*(?:\d+: )?from \S.*?:\d+:in [`']", re.M), 4),
    ("ruby", (":in ",), re.compile(r"^\S.*?:\d+:in [`'][^\n]*\([A-Z][\w:]*\)$", re.M), 4),
    ("java", _JVM_SOURCES, re.compile(
        r"^[ \t]*at [\w$./@-]+\((?:[\w$.-]+\.(?:java|kt|scala|groovy|clj)(?::\d+)?|Native Method|Unknown Source)\)$",
        re.M,
    ), 4),
    ("java", ("Caused by: ", "Exception in thread"), re.compile(r"^(?:Caused by: |Exception in thread \")", re.M), 3),
    ("java", (" more",), re.compile(r"^[ \t]*\.\.\. \d+ more$", re.M), 2),
    ("dotnet", (":line ",), re.compile(r"^[ \t]*at [^\n(]+\([^\n]*\) in [^\n]+:line \d+$", re.M), 5),
    ("dotnet", ("--- End of ",), re.compile(
        r"^[ \t]*--- End of (?:inner exception|stack trace from previous location)", re.M
    ), 5),
    ("dotnet", (" ---> ",), re.compile(r"^ ---> [\w.`+]+(?:Exception|Error)\b", re.M), 3),
    ("dotnet", ("   at ",), re.compile(r"^   at [\w.`+<>|\[\]]+\([^\n)]*\)$", re.M), 1),
    ("nodejs", ("at ",), re.compile(r"^[ \t]*at (?:.*? \()?(?:[^\n()]+):\d+:\d+\)?$", re.M), 3),
    ("nodejs", ("node:", "<anonymous>"), re.compile(
        r"\((?:node:[\w/]+|<anonymous>)(?::\d+:\d+)?\)$|^[ \t]*at node:", re.M
    ), 3),
    ("go", ("goroutine ",), re.compile(r"^goroutine \d+ \[[^\]\n]*\]:$", re.M), 6),
    ("go", (".go:",), re.compile(r"^\t\S[^\n]*\.go:\d+(?: \+0x[0-9a-f]+)?$", re.M), 3),
    ("go", ("panic: ", "fatal error: "), re.compile(r"^(?:panic: |fatal error: )", re.M), 2),
]


def detect_language(text: str) -> str | None:
    """Guess the runtime ("python", "java", "nodejs", "go", "dotnet", "ruby") that wrote ``text``."""
    if not isinstance(text, str) or not text:
        return None
    # the first _SCAN characters, lines cut at _LINE: bounded work whatever the text
    sample = "\n".join(line[:_LINE] for line in text[:_SCAN].splitlines())
    scores: dict[str, int] = {}
    for language, literals, pattern, weight in _SIGNS:
        if not any(literal in sample for literal in literals):
            continue
        hits = len(pattern.findall(sample))
        if hits:
            scores[language] = scores.get(language, 0) + weight * min(hits, 5)
    if not scores:
        return None
    return max(scores, key=lambda k: scores[k])


def _normalise(language: str | None) -> str | None:
    if not isinstance(language, str) or not language.strip():
        return None
    key = language.strip().lower()
    return key if key in _PARSERS else _ALIASES.get(key)


def _split_type(name: str, language: str | None) -> tuple[str | None, str]:
    """Split an ``exception.type`` attribute into (module, short type) the way its runtime names types."""
    if language is None:
        language = "go" if "/" in name or name.startswith("*") else "ruby" if "::" in name else "python"
    if language == "python":
        return split_python_type(name)
    if language == "ruby":
        return split_at_last(name, "::")
    if language in ("go", "nodejs"):  # "*fs.PathError" is how Go names it; JS names have no module
        return None, name
    return split_at_last(name, ".")


def _run(parser: _Parser, text: str) -> list[ParsedException]:
    try:
        return parser(text)
    except Exception:  # a parser bug must never lose the error event
        return []


def parse(
    text: str,
    language: str | None = None,
    *,
    exception_type: str | None = None,
    exception_message: str | None = None,
) -> list[ParsedException]:
    """Parse stack-trace ``text`` into exceptions, oldest (root cause) first, the raised one last.

    ``language`` is the resource's ``telemetry.sdk.language`` (None: guessed from the text).
    ``exception_type`` / ``exception_message`` (the span event's attributes) fill in or correct the
    newest exception; with either given the result is never empty.
    """
    text = text if isinstance(text, str) else ""
    blank = not text or text.isspace()
    exception_type = exception_type if isinstance(exception_type, str) and exception_type.strip() else None
    exception_message = exception_message if isinstance(exception_message, str) else None
    lang = _normalise(language)
    excs: list[ParsedException] = []
    if not blank:
        if lang is not None:
            excs = _run(_PARSERS[lang], text)
        if not any(e["frames"] for e in excs):
            guessed = detect_language(text)
            if guessed is not None and guessed != lang:
                other = _run(_PARSERS[guessed], text)
                if any(e["frames"] for e in other) or not excs:
                    excs, lang = other, guessed
    if not excs:
        if exception_type is None and exception_message is None and blank:
            return []
        first_line = next((x.strip() for x in text.splitlines() if x.strip()), "")
        excs = [make_exception("", None, first_line[:1024])]
    newest = excs[-1]
    if exception_type is not None:
        full = exception_type.strip()
        module, short = _split_type(full, lang)
        if not short:
            module, short = None, full
        if module is None and short == newest["type"]:
            module = newest["module"]
        newest["type"], newest["module"] = short, module or None
    if exception_message is not None:
        newest["value"] = exception_message
    for exc in excs:
        if not exc["type"]:
            exc["type"] = "Error"
    return excs


_SOURCES = {"__cause__": "__cause__", "__context__": "__context__", "caused_by": "cause", "inner": "InnerException"}


def to_sentry_values(
    excs: list[ParsedException], mechanism_type: str = "generic", handled: bool | None = None
) -> list[dict[str, Any]]:
    """Sentry ``exception.values`` (oldest first) linked by ``mechanism.exception_id`` / ``parent_id``.

    The newest exception gets ``exception_id`` 0 and carries ``handled``; each older one points at the
    next newer one as its parent, with the relation as ``source``.
    """
    values: list[dict[str, Any]] = []
    count = len(excs)
    for index, exc in enumerate(excs):
        exception_id = count - 1 - index
        mechanism: dict[str, Any] = {"type": mechanism_type if exception_id == 0 else "chained"}
        if exception_id == 0 and handled is not None:
            mechanism["handled"] = handled
        if count > 1:
            mechanism["exception_id"] = exception_id
            if exception_id > 0:
                mechanism["parent_id"] = exception_id - 1
                relation = exc["relation"]
                if relation:
                    mechanism["source"] = _SOURCES.get(relation, relation)
        value: dict[str, Any] = {"type": exc["type"], "value": exc["value"], "mechanism": mechanism}
        if exc["module"]:
            value["module"] = exc["module"]
        if exc["frames"]:
            value["stacktrace"] = {"frames": [dict(f) for f in exc["frames"]]}
        values.append(value)
    return values
