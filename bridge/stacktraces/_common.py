"""Types and small helpers shared by the per-language stack-trace parsers."""
from __future__ import annotations

import re
from typing import Any, Optional, TypedDict

__all__ = [
    "Frame",
    "ParsedException",
    "basename",
    "chain",
    "frame",
    "make_exception",
    "split_at_last",
    "to_int",
]

Frame = dict[str, Any]


class ParsedException(TypedDict):
    """One exception parsed from stack-trace text.

    ``frames`` are Sentry frames, oldest first. ``relation`` says how this exception relates to the
    next (newer) one in the list: ``"__cause__"``, ``"__context__"``, ``"caused_by"``, ``"inner"``
    or ``None`` (for the newest, or when the text does not say).
    """

    type: str
    module: Optional[str]
    value: str
    frames: list[Frame]
    relation: Optional[str]


def make_exception(
    type_: str,
    module: str | None,
    value: str,
    frames: list[Frame] | None = None,
    relation: str | None = None,
) -> ParsedException:
    return {
        "type": type_,
        "module": module or None,
        "value": value,
        "frames": frames if frames is not None else [],
        "relation": relation,
    }


def frame(
    *,
    filename: str | None = None,
    abs_path: str | None = None,
    lineno: int | None = None,
    colno: int | None = None,
    function: str | None = None,
    module: str | None = None,
    package: str | None = None,
    in_app: bool | None = None,
    context_line: str | None = None,
) -> Frame:
    """A Sentry frame holding only the keys that are known (no ``None`` values)."""
    out: Frame = {}
    if filename:
        out["filename"] = filename
    if abs_path:
        out["abs_path"] = abs_path
    if lineno is not None:
        out["lineno"] = lineno
    if colno is not None:
        out["colno"] = colno
    if function:
        out["function"] = function
    if module:
        out["module"] = module
    if package:
        out["package"] = package
    if in_app is not None:
        out["in_app"] = in_app
    if context_line is not None:
        out["context_line"] = context_line
    return out


def chain(excs: list[ParsedException], relation: str) -> list[ParsedException]:
    """Link a list that is already oldest first: every exception but the newest gets ``relation``."""
    for exc in excs[:-1]:
        exc["relation"] = relation
    if excs:
        excs[-1]["relation"] = None
    return excs


def split_at_last(name: str, sep: str = ".") -> tuple[str | None, str]:
    """``"a.b.C"`` → ``("a.b", "C")``; no separator → ``(None, name)``."""
    head, found, tail = name.rpartition(sep)
    if not found or not head or not tail:
        return None, name
    return head, tail


_PATH_SEP = re.compile(r"[\\/]")


def basename(path: str) -> str:
    """The last component of a POSIX or Windows path (the path itself when it has none)."""
    parts = _PATH_SEP.split(path)
    return parts[-1] or path


def to_int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None
