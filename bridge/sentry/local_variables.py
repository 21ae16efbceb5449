"""``include_local_variables``: every frame's locals as sentry-sdk collects them (``vars``), off by default
(privacy first). Read on the capturing thread, at the capture (as sentry-sdk), and shaped as sentry-sdk
serializes them: every value is its ``repr`` (``'text'``, ``3``, ``None``), mappings and sequences are
walked 5 levels deep and 10 items wide, cycles are ``<cyclic>``; names on sentry-sdk's default denylist
(and its PII denylist, without ``send_default_pii``) are ``[Filtered]``. Unlike sentry-sdk (no limit by
default) each value is capped at 1024 characters. A frame keeps its first 10 variables, as sentry-sdk.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping, Set
from types import TracebackType
from typing import Any, Final, Optional

from bridge.sentry.values import safe_repr

__all__ = ["collect", "add_local_variables", "DENYLIST", "PII_DENYLIST", "LocalsByFrame"]

# sentry-sdk's DEFAULT_DENYLIST and DEFAULT_PII_DENYLIST (matched against the lowercased name, as there).
DENYLIST: Final = frozenset(
    (
        "password", "passwd", "secret", "api_key", "apikey", "auth", "credentials", "mysql_pwd", "privatekey",
        "private_key", "token", "session", "csrftoken", "sessionid", "x_csrftoken", "x_forwarded_for",
        "set_cookie", "cookie", "authorization", "proxy-authorization", "x_api_key", "aiohttp_session",
        "connect.sid", "csrf_token", "csrf", "_csrf", "_csrf_token", "phpsessid", "_session", "symfony",
        "user_session", "_xsrf", "xsrf-token",
    )
)  # fmt: skip
PII_DENYLIST: Final = frozenset(("x_forwarded_for", "x_real_ip", "ip_address", "remote_addr"))
FILTERED: Final = "[Filtered]"
MAX_VARIABLES: Final = 10  # per frame, as sentry-sdk's databag breadth
MAX_DEPTH: Final = 5
MAX_BREADTH: Final = 10
MAX_CHARS: Final = 1024
_GROUP: Final = getattr(builtins, "BaseExceptionGroup", None)

FrameKey = tuple[str, str, int]
LocalsByFrame = dict[FrameKey, dict[str, Any]]


def _value(value: Any, depth: int, path: set[int]) -> Any:
    if depth <= 0:
        return safe_repr(value, MAX_CHARS)
    if isinstance(value, Mapping) or (
        isinstance(value, (list, tuple, Set)) and not isinstance(value, (str, bytes, bytearray))
    ):
        if id(value) in path:
            return "<cyclic>"
        path.add(id(value))
        try:
            if isinstance(value, Mapping):
                return {
                    str(key): _value(item, depth - 1, path)
                    for _, (key, item) in zip(range(MAX_BREADTH), value.items())
                }
            return [_value(item, depth - 1, path) for _, item in zip(range(MAX_BREADTH), value)]
        except Exception:
            return safe_repr(value, MAX_CHARS)
        finally:
            path.discard(id(value))
    return safe_repr(value, MAX_CHARS)


def _frame_vars(frame: Any, send_default_pii: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for index, (name, value) in enumerate(dict(frame.f_locals).items()):
        if index >= MAX_VARIABLES:
            break
        key = str(name)
        lowered = key.lower()
        if lowered in DENYLIST or (not send_default_pii and lowered in PII_DENYLIST):
            out[key] = FILTERED
        else:
            out[key] = _value(value, MAX_DEPTH - 1, set())  # the vars mapping is the first level
    return out


def _chain(exc: BaseException) -> list[tuple[BaseException, Optional[TracebackType]]]:
    found: list[tuple[BaseException, Optional[TracebackType]]] = []
    seen: set[int] = set()
    pending = [exc]
    while pending and len(found) < 25:
        error = pending.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        found.append((error, error.__traceback__))
        if error.__cause__ is not None:
            pending.append(error.__cause__)
        elif error.__context__ is not None and not error.__suppress_context__:
            pending.append(error.__context__)
        if _GROUP is not None and isinstance(error, _GROUP):
            pending.extend(error.exceptions)
    return found


def collect(exc: BaseException, traceback: Optional[TracebackType], send_default_pii: bool) -> LocalsByFrame:
    """On the capturing thread: the locals of every frame of ``exc`` and its chain, by (path, function, line)."""
    found: LocalsByFrame = {}
    for index, (_error, tb) in enumerate(_chain(exc)):
        tb = traceback if index == 0 and traceback is not None else tb
        while tb is not None:
            frame = tb.tb_frame
            code = frame.f_code
            path = code.co_filename if code.co_filename.startswith("<") else os.path.abspath(code.co_filename)
            key = (path, code.co_name or "<unknown>", tb.tb_lineno)
            if key not in found:
                try:
                    found[key] = _frame_vars(frame, send_default_pii)
                except Exception:
                    pass
            tb = tb.tb_next
    return found


def add_local_variables(event: dict[str, Any], collected: LocalsByFrame) -> None:
    """On the worker: ``vars`` onto each frame of ``event`` whose locals were collected."""
    for value in event.get("exception", {}).get("values") or []:
        for frame in value.get("stacktrace", {}).get("frames") or []:
            found = collected.get((frame.get("abs_path"), frame.get("function"), frame.get("lineno")))
            if found is not None:
                frame["vars"] = found
