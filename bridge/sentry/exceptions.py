"""Sentry's ``exception.values``: from a live exception (exact frames) or from an exception event's
attributes (``exception.type``, ``exception.message``, ``exception.stacktrace`` text).

Exceptions are listed oldest first. A chain (``__cause__``; ``__context__`` unless ``__suppress_context__``;
the members of an exception group) is linked by ``mechanism.exception_id`` / ``parent_id`` / ``source``;
the newest exception, listed last, has ``exception_id`` 0.
"""

from __future__ import annotations

import builtins
import sys
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final

from bridge.sentry.context import ConvertOptions, first_str
from bridge.sentry.frames import ParsedError, frames_from_parsed, frames_from_traceback, parse_stacktrace
from bridge.sentry.privacy import MAX_VALUE_CHARS

__all__ = ["MAX_CHAIN", "exception_values", "split_type", "safe_text", "values_from_text"]

MAX_CHAIN: Final = 25  # exceptions per event
_GROUP: Final = getattr(builtins, "BaseExceptionGroup", None)


def safe_text(value: Any) -> str:
    try:
        text = str(value)
    except Exception:
        try:
            text = repr(value)
        except Exception:
            text = "<unprintable>"
    return text[:MAX_VALUE_CHARS]


def _exception_message(exc: BaseException) -> str:
    message = safe_text(exc)
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list) and notes:
        message += "\n" + "\n".join(note for note in notes if isinstance(note, str))
    return message[:MAX_VALUE_CHARS]


def _mechanism(
    handled: bool, kind: str, exception_id: int, parent_id: int | None, source: str | None
) -> dict[str, Any]:
    mechanism: dict[str, Any] = {"type": kind if parent_id is None else "chained", "handled": handled}
    mechanism["exception_id"] = exception_id
    if parent_id is not None:
        mechanism["parent_id"] = parent_id
    if source:
        mechanism["source"] = source
    return mechanism


def exception_values(
    exc: BaseException,
    *,
    handled: bool,
    mechanism_type: str,
    options: ConvertOptions,
    traceback: TracebackType | None = None,
) -> list[dict[str, Any]]:
    """Sentry's ``exception.values`` for a live exception and its chain, oldest first, frames exact.

    ``traceback``: the exception's traceback as it was when it was recorded. An exception keeps gaining
    frames as it propagates past the recording point (up to the server's loop); the stack Sentry shows
    ends where the bridge caught it, as sentry-sdk's does.
    """
    newest_first: list[dict[str, Any]] = []
    seen: set[int] = set()

    def walk(error: BaseException, parent_id: int | None, source: str | None) -> None:
        if id(error) in seen or len(newest_first) >= MAX_CHAIN:
            return
        seen.add(id(error))
        exception_id = len(newest_first)
        cls = type(error)
        module = getattr(cls, "__module__", None)
        value: dict[str, Any] = {
            "type": getattr(cls, "__qualname__", cls.__name__),
            "value": _exception_message(error),
            "module": module if isinstance(module, str) and module not in ("builtins", "__builtin__") else None,
            "mechanism": _mechanism(handled, mechanism_type, exception_id, parent_id, source),
        }
        if _GROUP is not None and isinstance(error, _GROUP):
            value["mechanism"]["is_exception_group"] = True
        recorded_tb = traceback if parent_id is None and traceback is not None else error.__traceback__
        stacktrace = frames_from_traceback(recorded_tb, options)
        if stacktrace:
            value["stacktrace"] = stacktrace
        newest_first.append(value)
        if error.__suppress_context__:
            if error.__cause__ is not None:
                walk(error.__cause__, exception_id, "__cause__")
        elif error.__context__ is not None:
            walk(error.__context__, exception_id, "__context__")
        if _GROUP is not None and isinstance(error, _GROUP):
            for index, member in enumerate(error.exceptions):
                walk(member, exception_id, f"exceptions[{index}]")

    walk(exc, None, None)
    newest_first.reverse()
    return newest_first


def split_type(qualified: str, language: str | None) -> tuple[str | None, str]:
    """(module, type) of a recorded ``exception.type``.

    Python records ``module.QualName``: the module is the longest dotted prefix that is an imported module
    here (so ``pkg.Outer.Inner`` and ``PIL.Image.DecompressionBombError`` split right), else everything before
    the last dot. Java (``java.lang.IllegalStateException``) splits at the last dot; other languages' types
    stay whole.
    """
    if "." not in qualified or language not in (None, "python", "java"):
        return None, qualified
    parts = qualified.split(".")
    if language != "java":
        for cut in range(len(parts) - 1, 0, -1):
            if ".".join(parts[:cut]) in sys.modules:
                module = ".".join(parts[:cut])
                return (None if module == "builtins" else module), ".".join(parts[cut:])
    module, _, name = qualified.rpartition(".")
    return (None if module == "builtins" else module), name


def values_from_text(
    attributes: Mapping[str, Any], *, handled: bool, mechanism_type: str, options: ConvertOptions, language: str | None
) -> list[dict[str, Any]]:
    """``exception.values`` from an exception event's attributes: type, message and the stack-trace text."""
    qualified = first_str(attributes, "exception.type")
    message = attributes.get("exception.message")
    stack = attributes.get("exception.stacktrace")
    parsed = parse_stacktrace(stack, language) if isinstance(stack, str) else []
    if not parsed:
        parsed = [ParsedError(type="", module=None, value="")]
    parsed = parsed[-MAX_CHAIN:]
    newest = parsed[-1]
    if qualified:  # the attributes are authoritative for the recorded exception itself
        newest.module, newest.type = split_type(qualified, language)
    if message is not None:
        newest.value = safe_text(message)
    values = []
    count = len(parsed)
    for position, error in enumerate(parsed):
        exception_id = count - 1 - position
        parent_id = exception_id - 1 if exception_id else None
        value: dict[str, Any] = {
            "type": error.type or ("Error" if not error.value else ""),
            "value": error.value[:MAX_VALUE_CHARS],
            "mechanism": _mechanism(
                handled, mechanism_type, exception_id, parent_id, error.source if parent_id is not None else None
            ),
        }
        if not value["type"]:
            del value["type"]
        if error.module:
            value["module"] = error.module
        stacktrace = frames_from_parsed(error.frames, options, language)
        if stacktrace:
            value["stacktrace"] = stacktrace
        values.append(value)
    return values
