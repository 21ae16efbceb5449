"""``include_local_variables``: each in-app frame's locals as sentry-sdk collects them (``vars``), off by
default (privacy first). Values are made safe (``bridge.sentry.values``: repr'd, strings capped at 1024
characters, 10 items and 5 levels per value, as sentry-sdk's databag limits) and names that look secret are
replaced with ``[Filtered]`` (sentry-sdk's default denylist). They are read when the event is built on the
transport's worker, an instant after the capture: a local rebound in between shows its new value.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Final, Optional

from bridge.sentry.values import safe_value

__all__ = ["add_local_variables", "DENYLIST"]

# sentry-sdk's DEFAULT_DENYLIST (sentry_sdk/scrubber.py): compared lowercased.
DENYLIST: Final = frozenset(
    (
        "password", "passwd", "secret", "api_key", "apikey", "auth", "credentials", "mysql_pwd", "privatekey",
        "private_key", "token", "session", "csrftoken", "sessionid", "x_csrftoken", "x_forwarded_for",
        "set_cookie", "cookie", "authorization", "x_api_key", "aiohttp_session", "connect.sid",
        "csrf_token", "csrf", "_csrf", "_csrf_token", "PHPSESSID", "_session", "symfony", "user_session",
        "_xsrf", "XSRF-TOKEN",
    )
)  # fmt: skip
_DENIED: Final = frozenset(name.lower() for name in DENYLIST)
FILTERED: Final = "[Filtered]"
MAX_VARIABLES: Final = 50


def _frame_vars(frame: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for index, (name, value) in enumerate(dict(frame.f_locals).items()):
        if index >= MAX_VARIABLES:
            break
        key = str(name)
        out[key] = FILTERED if key.lower() in _DENIED else safe_value(value, depth=5, breadth=10)
    return out


def add_local_variables(event: dict[str, Any], exc: BaseException, traceback: Optional[TracebackType]) -> None:
    """Add ``vars`` to the frames of the newest exception of ``event`` (``exc``, whose frames were made from
    ``traceback``, oldest first)."""
    values = event.get("exception", {}).get("values") or []
    if not values:
        return
    frames = values[-1].get("stacktrace", {}).get("frames") or []
    entries = []
    tb = traceback if traceback is not None else exc.__traceback__
    while tb is not None:
        entries.append(tb.tb_frame)
        tb = tb.tb_next
    by_position = {(frame.f_code.co_filename, frame.f_code.co_name): frame for frame in entries}
    for out in frames:
        if not out.get("in_app"):
            continue
        frame = by_position.get((out.get("abs_path"), out.get("function")))
        if frame is None:
            continue
        try:
            out["vars"] = _frame_vars(frame)
        except Exception:
            continue
