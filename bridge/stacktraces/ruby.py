"""Ruby backtraces, as ``Exception#full_message(highlight: false)`` writes them (what OTel Ruby records).

``path:line:in 'label': message (Class)`` then ``\\tfrom path:line:in 'label'`` lines, newest first;
Ruby 3.4 quotes labels with ``'`` and names the owner (``'Foo#bar'``), older Rubies use `` `bar' ``.
Since 3.1 causes follow, each with its own header line: the result is the root cause first, linked by
``"caused_by"``. The reversed ``order: :bottom`` layout (``Traceback`` + ``N: from``) is read too.
"""
from __future__ import annotations

import re

from bridge.stacktraces._common import Frame, ParsedException, chain, frame, make_exception, split_at_last

__all__ = ["parse_ruby"]

_LOC = r"(?P<path><internal:[^>\n]*>|(?:[A-Za-z]:)?[^:\n]*?):(?P<line>\d+)(?::in [`'](?P<label>[^'\n]*)')?"
_HEADER = re.compile(_LOC + r": (?P<rest>.*)$")
_FROM = re.compile(r"\s*(?:\d+: )?from " + _LOC + r"\s*$")
_CLASS_AT_END = re.compile(r"(?P<msg>.*?) ?\((?P<cls>[A-Z][\w:]*)\)$")
_CLASS_NAME = re.compile(r"[A-Z]\w*(?:::[A-Z]\w*)*")
_OWNER = re.compile(r"(?:(?:block(?: \(\d+ levels\))?|rescue|ensure) in )*(?P<owner>[A-Z][\w:]*)[#.]")
_LEVELS = re.compile(r"\s*\.\.\. \d+ levels\.\.\.\s*$")
_NOT_IN_APP = ("/gems/", "/bundle/", "/rubygems/", "/lib/ruby/", "/ruby/lib/", "<internal:", "/vendor/ruby/")


def _frame(path: str, lineno: str, label: str | None) -> Frame:
    owner = _OWNER.match(label) if label else None
    posix = path.replace("\\", "/")
    return frame(
        filename=path, abs_path=path, lineno=int(lineno), function=label or None,
        module=owner.group("owner") if owner is not None else None,
        in_app=not any(hint in posix for hint in _NOT_IN_APP),
    )


class _Exc:
    __slots__ = ("cls", "msg", "frames")

    def __init__(self, cls: str, msg: list[str], frames: list[Frame]) -> None:
        self.cls = cls
        self.msg = msg
        self.frames = frames  # newest first


def _header(line: str) -> _Exc | None:
    m = _HEADER.match(line)
    if m is None:
        return None
    rest = m.group("rest")
    cls_match = _CLASS_AT_END.match(rest)
    if cls_match is not None:
        cls, msg = cls_match.group("cls"), cls_match.group("msg")
    elif rest == "unhandled exception":  # a RuntimeError with an empty message
        cls, msg = "RuntimeError", ""
    elif _CLASS_NAME.fullmatch(rest):  # any other class with an empty message prints its name alone
        cls, msg = rest, ""
    else:
        cls, msg = "", rest
    return _Exc(cls, [msg], [_frame(m.group("path"), m.group("line"), m.group("label"))])


def parse_ruby(text: str) -> list[ParsedException]:
    excs: list[_Exc] = []
    bottom: list[Frame] = []  # "N: from" frames of the order: :bottom layout, oldest first
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line or line.startswith("Traceback") or _LEVELS.match(line):
            continue
        if line[0] in " \t":
            f = _FROM.match(line)
            if f is not None:
                fr = _frame(f.group("path"), f.group("line"), f.group("label"))
                if line.lstrip()[:1].isdigit():
                    bottom.append(fr)
                elif excs:
                    excs[-1].frames.append(fr)
                continue
        current = excs[-1] if excs else None
        if current is None or len(current.frames) > 1 or bottom:
            exc = _header(line)
            if exc is not None:
                if bottom:
                    exc.frames.extend(reversed(bottom))
                    bottom = []
                excs.append(exc)
                continue
        if current is not None and len(current.frames) <= 1:
            current.msg.append(line)  # "first line (Class)" then the message's other lines
        elif current is None:
            excs.append(_Exc("", [line], []))
    out: list[ParsedException] = []
    for exc in reversed(excs):
        module, short = split_at_last(exc.cls, "::")
        out.append(make_exception(short, module, "\n".join(exc.msg), exc.frames[::-1]))
    return chain(out, "caused_by")

