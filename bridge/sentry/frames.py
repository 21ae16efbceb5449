"""Stack frames for Sentry: from live tracebacks (exact) or from stack-trace text; source context; in-app.

Frames are listed oldest first, as Sentry wants them. Each has ``filename`` (module-relative, like
``app/views.py``), ``abs_path``, ``lineno``, ``function``, ``module``, ``in_app`` and, when the file can be
read here, ``pre_context`` / ``context_line`` / ``post_context`` (5 lines each).

In-app rules, first match wins: ``in_app_include`` module prefix → in-app; ``in_app_exclude`` → not; the
bridge's own files, site-packages/dist-packages (and node_modules, gems, Go module cache), the standard
library and ``<frozen ...>`` → not; JVM/.NET runtime modules → not; then, for Python frames, when a
``project_root`` is set only files under it are in-app; everything else is in-app.

Text is parsed by ``bridge.stacktraces.parse`` through the single adapter ``parse_stacktrace`` below.
"""

from __future__ import annotations

import functools
import linecache
import logging
import os
import re
import sys
import sysconfig
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any, Final, Optional

from bridge.sentry.context import ConvertOptions

__all__ = [
    "MAX_FRAMES",
    "ParsedError",
    "current_stack",
    "frames_from_parsed",
    "frames_from_stack",
    "frames_from_traceback",
    "is_in_app",
    "parse_stacktrace",
    "source_context",
]

logger = logging.getLogger(__name__)

MAX_FRAMES: Final = 100  # per exception; the oldest and newest halves are kept
CONTEXT_LINES: Final = 5
MAX_LINE_CHARS: Final = 1000

_BRIDGE_DIR: Final = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_EXTERNAL: Final = re.compile(
    r"[\\/](?:dist|site)-packages[\\/]|[\\/]node_modules[\\/]|[\\/]gems[\\/]|[\\/]pkg[\\/]mod[\\/]"
    r"|[\\/]lib[\\/](?:python|pypy)\d+(?:\.\d+)?[\\/]|[\\/]Python\d+[\\/]Lib[\\/]|[\\/]lib[\\/]ruby[\\/]"
    r"|[\\/]go[\\/]src[\\/]|^node:|^internal[\\/]"
)
_STDLIB_DIRS: Final = tuple(
    {os.path.join(path, "") for key in ("stdlib", "platstdlib") if (path := sysconfig.get_paths().get(key))}
)
_RUNTIME_MODULES: Final = (
    "java.", "javax.", "jdk.", "sun.", "com.sun.", "kotlin.", "kotlinx.coroutines.", "scala.",
    "System.", "Microsoft.",
)  # fmt: skip
_FRAME_KEYS: Final = (
    "filename", "abs_path", "lineno", "colno", "function", "raw_function", "module", "package", "in_app",
    "platform", "pre_context", "context_line", "post_context",
)  # fmt: skip


def _module_in(module: str | None, prefixes: Sequence[str]) -> bool:
    if not module:
        return False
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


@functools.lru_cache(maxsize=4096)
def is_in_app(abs_path: str | None, module: str | None, options: ConvertOptions, language: str | None) -> bool:
    """The in-app rule (see the module docstring). Cached: frames repeat across errors."""
    if _module_in(module, options.in_app_include):
        return True
    if _module_in(module, options.in_app_exclude):
        return False
    if abs_path:
        if abs_path.startswith("<") or abs_path.startswith(_BRIDGE_DIR) or _EXTERNAL.search(abs_path):
            return False
        if language in (None, "python") and abs_path.startswith(_STDLIB_DIRS):
            return False
    if module and module.startswith(_RUNTIME_MODULES):
        return False
    if language in (None, "python") and options.project_root and abs_path:
        root = os.path.join(os.path.normpath(options.project_root), "")
        return os.path.normpath(abs_path).startswith(root)
    return True


def filename_for(abs_path: str, module: str | None) -> str:
    """The path as far as the module name reaches: ``/srv/app/views.py`` of ``app.views`` → ``app/views.py``."""
    if not module or abs_path.startswith("<"):
        return abs_path
    parts = abs_path.replace("\\", "/").split("/")
    depth = module.count(".") + 1 + (parts[-1] == "__init__.py")
    return "/".join(parts[-depth:])


@functools.lru_cache(maxsize=4096)
def module_for_path(abs_path: str) -> str | None:
    """The dotted module name of a Python file, from the longest ``sys.path`` entry holding it."""
    if not abs_path.endswith(".py"):
        return None
    best = ""
    for entry in sys.path:
        base = os.path.join(os.path.abspath(entry or os.curdir), "")
        if abs_path.startswith(base) and len(base) > len(best):
            best = base
    if not best:
        return None
    dotted = abs_path[len(best) : -3].replace(os.sep, ".")
    return dotted.removesuffix(".__init__") or None


def source_context(
    abs_path: str, lineno: int, module_globals: dict[str, Any] | None = None
) -> tuple[list[str], str, list[str]] | None:
    """Five lines before, the line, five after, read through ``linecache`` (None when unreadable)."""
    try:
        lines = linecache.getlines(abs_path, module_globals)
    except Exception:  # a loader's get_source may raise anything
        return None
    if not lines or not 1 <= lineno <= len(lines):
        return None
    index = lineno - 1

    def clean(line: str) -> str:
        return line.rstrip("\r\n")[:MAX_LINE_CHARS]

    return (
        [clean(line) for line in lines[max(0, index - CONTEXT_LINES) : index]],
        clean(lines[index]),
        [clean(line) for line in lines[index + 1 : index + 1 + CONTEXT_LINES]],
    )


def _add_context(frame: dict[str, Any], module_globals: dict[str, Any] | None = None) -> None:
    abs_path, lineno = frame.get("abs_path"), frame.get("lineno")
    if isinstance(abs_path, str) and isinstance(lineno, int):
        context = source_context(abs_path, lineno, module_globals)
        if context is not None:
            frame["pre_context"], frame["context_line"], frame["post_context"] = context


def _cap(items: list[Any]) -> tuple[list[Any], list[int] | None]:
    """At most MAX_FRAMES, the oldest and newest halves; and Sentry's ``frames_omitted`` [start, end)."""
    if len(items) <= MAX_FRAMES:
        return items, None
    head = MAX_FRAMES // 2
    tail = MAX_FRAMES - head
    return items[:head] + items[-tail:], [head, len(items) - tail]


def frames_from_traceback(tb: TracebackType | None, options: ConvertOptions) -> dict[str, Any] | None:
    """Sentry's ``stacktrace`` interface for a live traceback (None without frames)."""
    entries: list[tuple[FrameType, int | None]] = []
    while tb is not None:
        entries.append((tb.tb_frame, tb.tb_lineno))
        tb = tb.tb_next
    return frames_from_stack(entries, options)


def current_stack(skip: int = 0) -> list[tuple[FrameType, int | None]]:
    """The calling thread's stack as ``(frame, line)`` pairs, oldest first (``skip`` innermost frames left out)."""
    entries: list[tuple[FrameType, int | None]] = []
    frame: FrameType | None = sys._getframe(1 + skip)
    while frame is not None:
        entries.append((frame, frame.f_lineno))
        frame = frame.f_back
    entries.reverse()
    return entries


def frames_from_stack(
    entries: Sequence[tuple[FrameType, int | None]], options: ConvertOptions
) -> dict[str, Any] | None:
    """Sentry's ``stacktrace`` interface for ``(frame, line)`` pairs, oldest first (None without frames)."""
    if not entries:
        return None
    kept, omitted = _cap(list(entries))
    frames = []
    for frame, lineno in kept:
        code = frame.f_code
        module_globals = frame.f_globals
        module = module_globals.get("__name__")
        module = module if isinstance(module, str) else None
        raw_path = code.co_filename
        abs_path = raw_path if raw_path.startswith("<") else os.path.abspath(raw_path)
        out: dict[str, Any] = {
            "filename": filename_for(abs_path, module),
            "abs_path": abs_path,
            "function": code.co_name or "<unknown>",
            "module": module,
        }
        if isinstance(lineno, int):
            out["lineno"] = lineno
        out["in_app"] = is_in_app(abs_path, module, options, "python")
        _add_context(out, module_globals)
        frames.append(out)
    stacktrace: dict[str, Any] = {"frames": frames}
    if omitted:
        stacktrace["frames_omitted"] = omitted
    return stacktrace


def frames_from_parsed(
    parsed: Sequence[Mapping[str, Any]], options: ConvertOptions, language: str | None
) -> dict[str, Any] | None:
    """Sentry's ``stacktrace`` interface for frames parsed from text (oldest first), with in-app and,
    for files that exist on this machine, source context."""
    kept, omitted = _cap([frame for frame in parsed if isinstance(frame, Mapping)])
    if not kept:
        return None
    is_python = language in (None, "python")
    frames = []
    for raw in kept:
        frame = {key: raw[key] for key in _FRAME_KEYS if raw.get(key) is not None}
        abs_path = frame.get("abs_path") if isinstance(frame.get("abs_path"), str) else None
        if abs_path is None and isinstance(frame.get("filename"), str) and os.path.isabs(frame["filename"]):
            abs_path = frame["abs_path"] = frame["filename"]
        local = bool(abs_path and os.path.isabs(abs_path) and os.path.isfile(abs_path))
        module = frame.get("module") if isinstance(frame.get("module"), str) else None
        if is_python and abs_path and (module is None or local):
            # A file on this machine: its module as this interpreter imports it beats a parser's guess.
            module = module_for_path(abs_path) or module
            if module:
                frame["module"] = module
        if abs_path and (frame.get("filename") in (None, abs_path) or (local and is_python)):
            frame["filename"] = filename_for(abs_path, module) if is_python else abs_path
        if not isinstance(frame.get("in_app"), bool):
            frame["in_app"] = is_in_app(abs_path, module, options, language)
        if local:
            # The source as it is (indentation and all, as sentry-sdk shows it), not the trimmed copy
            # the traceback text carries.
            for key in ("pre_context", "context_line", "post_context"):
                frame.pop(key, None)
            _add_context(frame)
        frames.append(frame)
    stacktrace: dict[str, Any] = {"frames": frames}
    if omitted:
        stacktrace["frames_omitted"] = omitted
    return stacktrace


@dataclass
class ParsedError:
    """One exception parsed from stack-trace text; a list of these is oldest first."""

    type: str
    module: str | None
    value: str
    frames: list[Mapping[str, Any]] = field(default_factory=list)
    # How this exception leads to the next (newer) one in the list: "__cause__" or "__context__", if known.
    source: str | None = None


def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, Mapping) else getattr(item, name, None)


_Parser = Callable[[str, Optional[str]], Sequence[Any]]
_parser: list[_Parser | None] = []  # [] until looked up once


def _load_parser() -> _Parser | None:
    """The wiring point: ``bridge.stacktraces.parse(text, language)``, or None while it is not installed."""
    try:
        from bridge.stacktraces import parse  # written concurrently; wired at merge
    except ImportError:
        return None
    return parse  # type: ignore[no-any-return]


# Sentry's mechanism.source for each parser relation: Python's attribute names, else what the Java and
# .NET SDKs write.
_SOURCES: Final = {
    "__cause__": "__cause__",
    "__context__": "__context__",
    "caused_by": "cause",
    "inner": "InnerException",
}


def parse_stacktrace(text: str, language: str | None) -> list[ParsedError]:
    """THE adapter to the stack-trace parsers: text → exceptions oldest first ([] when unparseable).

    ``language`` is the resource's ``telemetry.sdk.language`` (``python``, ``java``, ``nodejs``, ``go``,
    ``dotnet``, ``ruby``...) or None. Never raises.
    """
    if not _parser:
        _parser.append(_load_parser())
    parse = _parser[0]
    if parse is None or not text:
        return []
    try:
        parsed = list(parse(text, language))
    except Exception:
        logger.debug("could not parse a %s stack trace", language or "", exc_info=True)
        return []
    out = []
    for item in parsed:
        type_, value = _field(item, "type"), _field(item, "value")
        frames = _field(item, "frames") or []
        module = _field(item, "module")
        # How this (older) exception leads to the next: the parsers call it "relation".
        source = _field(item, "source") or _field(item, "relation")
        out.append(
            ParsedError(
                type=type_ if isinstance(type_, str) else "",
                module=module if isinstance(module, str) and module else None,
                value=value if isinstance(value, str) else "",
                frames=list(frames) if isinstance(frames, (list, tuple)) else [],
                source=_SOURCES.get(source) if isinstance(source, str) else None,
            )
        )
    return out
