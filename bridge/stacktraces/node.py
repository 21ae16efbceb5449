"""JavaScript stack traces: V8's ``err.stack`` (Node, Chrome, Deno; what OTel JS records).

Also reads ``util.inspect`` / ``console.log(err)`` output, where Node prints ``[cause]: ...`` chains and
replaces frames shared with the cause by ``... N lines matching cause stack trace ...``; and the
``fn@url:line:col`` lines of Firefox and Safari. Frames are printed newest first; they are reversed.
"""
from __future__ import annotations

import re

from bridge.stacktraces._common import Frame, ParsedException, chain, frame, make_exception

__all__ = ["parse_node"]

_GECKO = re.compile(r"\s*(?P<func>[^@\s]*)@(?P<loc>\S.*:\d+(?::\d+)?)$")
_LOC = re.compile(r"(?P<file>.+?):(?P<line>\d+)(?::(?P<col>\d+))?")
_EVAL = re.compile(r"\(([^()]+?):(\d+):(\d+)\)")
_HEADER = re.compile(r"(?P<type>[\w$.]+)(?: \[(?P<code>[^\]]*)\])?(?:: (?P<msg>.*)|:)?$", re.DOTALL)
_CAUSE = re.compile(r"(?P<indent>\s*)\[cause\]: (?P<rest>.*?)(?: \{)?$")
_MATCHING = re.compile(r"\s*\.\.\. (\d+) lines? matching cause stack trace \.\.\.\s*$")
_ERRORS = re.compile(r"(?P<indent>\s*)\[errors\]: \[\s*$")


class _Error:
    __slots__ = ("header", "frames", "keys", "gaps", "indent")

    def __init__(self, header: str, indent: int) -> None:
        self.header = [header]
        self.frames: list[Frame] = []  # newest first, as printed
        self.keys: list[str] = []
        self.gaps: list[tuple[int, int]] = []  # (position in frames, count) for "... N lines matching"
        self.indent = indent


def _in_app(path: str) -> bool:
    return not (
        "node_modules" in path
        or path.startswith(("node:", "internal/", "<", "native"))
        or "/node_modules/" in path.replace("\\", "/")
    )


def _frame(func: str | None, loc: str) -> Frame:
    if func is not None and func.startswith("async "):
        func = func[6:]
    if loc.startswith("eval at "):
        origin = _EVAL.search(loc)
        if origin is not None:
            path = origin.group(1)
            return frame(
                filename=_filename(path), abs_path=path, lineno=int(origin.group(2)),
                colno=int(origin.group(3)), function=func or "eval", in_app=_in_app(path),
            )
    m = _LOC.fullmatch(loc)
    if m is None:  # "native", "<anonymous>", "index 0"
        return frame(filename=loc if loc.startswith("<") else None, function=func or "<anonymous>", in_app=False)
    path = m.group("file")
    col = m.group("col")
    return frame(
        filename=_filename(path), abs_path=path, lineno=int(m.group("line")), colno=int(col) if col else None,
        function=func or "<anonymous>", in_app=_in_app(path),
    )


def _filename(path: str) -> str:
    return path[7:] if path.startswith("file://") else path


def _parse_frame(line: str) -> Frame | None:
    stripped = line.strip()
    if stripped.startswith("at ") and len(stripped) > 3:
        rest = stripped[3:]
        # "fn (location)": the location may hold parentheses itself (eval origins), the name does not
        split = rest.find(" (")
        if rest.endswith(")") and split > 0:
            return _frame(rest[:split], rest[split + 2:-1])
        return _frame(None, rest)
    g = _GECKO.match(line)
    if g is not None:
        return _frame(g.group("func") or None, g.group("loc"))
    return None


def parse_node(text: str) -> list[ParsedException]:
    errors: list[_Error] = []
    current: _Error | None = None
    skip_until: str | None = None  # closing line of an AggregateError's [errors] list
    for raw in text.splitlines():
        line = raw.rstrip()
        if skip_until is not None:
            if line == skip_until:
                skip_until = None
            continue
        if not line:
            continue
        if line.endswith(" {"):
            line = line[:-2]
        stripped = line.lstrip()
        if stripped.startswith("at ") or ("@" in stripped and ":" in stripped):
            f = _parse_frame(line)
            if f is not None:
                if current is None:
                    current = _Error("", 0)
                    errors.append(current)
                current.frames.append(f)
                current.keys.append(stripped)
                continue
        if stripped.startswith("... "):
            gap = _MATCHING.match(line)
            if gap is not None and current is not None:
                current.gaps.append((len(current.frames), int(gap.group(1))))
                continue
        if stripped.startswith("[cause]: "):
            cause = _CAUSE.match(line)
            if cause is not None:
                rest = cause.group("rest")
                if rest[:1] not in ("'", '"', "{", "[", "`") and not rest[:1].isdigit():
                    current = _Error(rest, len(cause.group("indent")))
                    errors.append(current)
                continue
        if stripped.startswith("[errors]: ["):
            errs = _ERRORS.match(line)
            if errs is not None:
                skip_until = errs.group("indent") + "]"
                continue
        if current is None:
            current = _Error(line, 0)
            errors.append(current)
        elif not current.frames and current.gaps == []:
            current.header.append(line[current.indent:] if line[: current.indent].isspace() else line)
    _fill_gaps(errors)
    excs = [_to_exception(e) for e in reversed(errors)]
    return chain(excs, "caused_by")


def _fill_gaps(errors: list[_Error]) -> None:
    """Expand ``... N lines matching cause stack trace ...`` from the (already expanded) cause."""
    for index in range(len(errors) - 2, -1, -1):
        err, cause = errors[index], errors[index + 1]
        for pos, count in reversed(err.gaps):
            start = _gap_start(err, cause, pos, count)
            if start is None:
                continue
            err.frames[pos:pos] = [dict(f) for f in cause.frames[start:start + count]]
            err.keys[pos:pos] = cause.keys[start:start + count]


def _gap_start(err: _Error, cause: _Error, pos: int, count: int) -> int | None:
    if pos > 0 and err.keys[pos - 1] in cause.keys:
        start = cause.keys.index(err.keys[pos - 1]) + 1
    elif pos < len(err.keys) and err.keys[pos] in cause.keys:
        start = cause.keys.index(err.keys[pos]) - count
    else:
        start = len(cause.keys) - count
    if start < 0 or start + count > len(cause.keys):
        return None
    return start


def _to_exception(err: _Error) -> ParsedException:
    text = "\n".join(err.header).strip()
    m = _HEADER.match(text)
    if m is None:
        return make_exception("", None, text, err.frames[::-1])
    return make_exception(m.group("type"), None, m.group("msg") or "", err.frames[::-1])
