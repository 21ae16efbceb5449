"""User-given values (contexts, extras, breadcrumb data, frame locals) made safe for an event's JSON.

Whatever the app hands over: JSON's own types pass (strings capped), mappings and sequences are walked to a
bounded depth and breadth, recursion is cut, and everything else is its ``repr`` (capped). Never raises.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["safe_value", "safe_repr", "MAX_DEPTH", "MAX_BREADTH", "MAX_CHARS"]

MAX_DEPTH: Final = 10  # nesting levels kept; deeper values are their repr
MAX_BREADTH: Final = 100  # items kept per mapping or sequence
MAX_CHARS: Final = 1024  # characters per string (sentry-sdk's max_value_length default)
_CUT: Final = "..."


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - len(_CUT))] + _CUT


def safe_repr(value: Any, limit: int = MAX_CHARS) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<unprintable {type(value).__name__} object>"
    return _cap(text, limit)


def safe_value(
    value: Any, *, depth: int = MAX_DEPTH, breadth: int = MAX_BREADTH, limit: int = MAX_CHARS
) -> Any:
    """``value`` as plain JSON data (see the module's docstring)."""
    return _walk(value, depth, breadth, limit, set())


def _walk(value: Any, depth: int, breadth: int, limit: int, path: set[int]) -> Any:
    kind = type(value)
    if kind is str:  # the common cases first: this runs for every breadcrumb
        return value if len(value) <= limit else _cap(value, limit)
    if (kind is dict or kind is list) and not value:
        return {} if kind is dict else []
    if value is None or isinstance(value, (bool, int)):
        return value if not isinstance(value, int) or isinstance(value, bool) or abs(value) < 2**63 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _cap(value, limit)
    if isinstance(value, bytes):
        return _cap(value.decode("utf-8", "replace"), limit)
    if id(value) in path:
        return "<cyclic>"
    is_mapping = isinstance(value, Mapping)
    if not (is_mapping or isinstance(value, (list, tuple, set, frozenset))):
        return safe_repr(value, limit)
    if depth <= 0:
        return safe_repr(value, limit)
    path.add(id(value))
    try:
        if is_mapping:
            out: dict[str, Any] = {}
            for index, (key, item) in enumerate(value.items()):
                if index >= breadth:
                    break
                name = key if isinstance(key, str) else safe_repr(key, 200)
                out[_cap(name, 200)] = _walk(item, depth - 1, breadth, limit, path)
            return out
        return [_walk(item, depth - 1, breadth, limit, path) for _, item in zip(range(breadth), value)]
    except Exception:
        return safe_repr(value, limit)
    finally:
        path.discard(id(value))
