"""Python tracebacks, as ``traceback.format_exception`` writes them (what the OTel Python SDK records).

Handles chained blocks (``__cause__`` / ``__context__``), 3.11+ caret lines, ``[Previous line repeated
N more times]``, ``SyntaxError`` location blocks, multi-line messages and exception groups (the
top-level group is kept, its sub-exceptions are skipped). Text is oldest frame first already.
"""
from __future__ import annotations

import functools
import os
import re

from bridge.stacktraces._common import Frame, ParsedException, make_exception

__all__ = ["parse_python", "split_python_type", "MAX_REPEAT"]

# "[Previous line repeated N more times]" is expanded into N copies of the frame, at most this many.
MAX_REPEAT = 200

HEADER = "Traceback (most recent call last):"
_CAUSE = "The above exception was the direct cause of the following exception:"
_CONTEXT = "During handling of the above exception, another exception occurred:"
_MARKERS = {_CAUSE: "__cause__", _CONTEXT: "__context__"}
_GROUP_HEADER = "  + Exception Group Traceback (most recent call last):"

_BLOCK_SPLIT = re.compile(f"^({re.escape(_CAUSE)}|{re.escape(_CONTEXT)})[ \\t]*$", re.MULTILINE)
# What a block holds, in order: frames (with their source line), repeat notes, a SyntaxError's location,
# and the first unindented line that is not the "Traceback" header, where the exception line starts.
_ITEM = re.compile(  # each alternative starts at a newline: the engine then skips to newlines quickly
    r'\n(?:  File "([^\n]*?)", line (\d+|None), in ([^\n]*)(?:\n    ([^\n]*))?'
    r"|  \[Previous line repeated (\d+) more times?\]"
    r'|  File "([^\n]*)", line (-?\d+)[ \t]*$'
    r"|(?!Traceback \(most recent call last\):)(\S[^\n]*))",
    re.MULTILINE,
)
_FIRST_FRAME = re.compile(r'^([ \t]*)File "[^\n]*", line \d+', re.MULTILINE)
_EXC_LINE = re.compile(r"(?P<type>[^\s:()\[\]'\"]+)(?:: (?P<msg>.*)|:)?$", re.DOTALL)
_STDLIB = re.compile(r"/lib(?:64)?/python\d+(?:\.\d+)?t?/|/lib-python/\d[^/]*/|/Lib/")
_FROZEN = re.compile(r"<frozen ([\w.]+)>")
_IDENT = re.compile(r"[A-Za-z_]\w*")
# Directory names that are roots rather than packages when guessing a module from an absolute path.
_ROOT_DIRS = frozenset({
    "app", "apps", "src", "srv", "code", "opt", "usr", "home", "root", "tmp", "var", "lib", "local",
    "workspace", "workdir", "project", "build", "www", "site", "data", "mnt", "bin",
})


def split_python_type(name: str) -> tuple[str | None, str]:
    """``"myapp.errors.Outer.Inner"`` → ``("myapp.errors", "Outer.Inner")``; builtins have no module.

    The module ends before the first capitalised part or the function owning ``<locals>``; a name
    without a lowercase part is split at its last dot.
    """
    if name.startswith("builtins."):
        return None, name[9:]
    parts = name.split(".")
    if len(parts) == 1:
        return None, name
    cut = 0
    for i, part in enumerate(parts[:-1]):
        if not part[:1].islower() and part[:1] != "_":
            break
        if i + 1 < len(parts) and parts[i + 1] == "<locals>":
            break
        cut = i + 1
    if cut == 0:
        cut = len(parts) - 1
    return ".".join(parts[:cut]), ".".join(parts[cut:])


@functools.lru_cache(maxsize=2048)
def _path_info(path: str, cwd: str) -> tuple[str, str | None, bool | None]:
    """(filename, module, in_app) for a frame's path."""
    frozen = _FROZEN.fullmatch(path)
    if frozen:
        return path, frozen.group(1), False
    if path.startswith("<"):
        return path, None, None
    posix = path.replace("\\", "/")
    in_app = True
    rel: str | None = None
    third_party = max(posix.rfind("/site-packages/"), posix.rfind("/dist-packages/"))
    if third_party >= 0:
        rel, in_app = posix[third_party + 15:], False
    else:
        stdlib = _STDLIB.search(posix)
        if stdlib is not None:
            rel, in_app = posix[stdlib.end():], False
        elif cwd and len(posix) > len(cwd) and posix.startswith(cwd) and posix[len(cwd)] == "/":
            rel = posix[len(cwd) + 1:]
        elif not posix.startswith("/") and not re.match(r"[A-Za-z]:/", posix):
            rel = posix
            while rel.startswith("./"):
                rel = rel[2:]
        else:
            parts = posix.split("/")
            parent = parts[-2] if len(parts) >= 2 else ""
            keep = 2 if _IDENT.fullmatch(parent) and parent not in _ROOT_DIRS else 1
            rel = "/".join(parts[-keep:])
    return rel or path, _module_from(rel), in_app


@functools.lru_cache(maxsize=2048)
def _frame_base(path: str, cwd: str) -> Frame:
    """The path-derived part of a frame; callers copy it (it is cached and shared)."""
    filename, module, in_app = _path_info(path, cwd)
    base: Frame = {"filename": filename, "abs_path": path}
    if module:
        base["module"] = module
    if in_app is not None:
        base["in_app"] = in_app
    return base


def _module_from(rel: str | None) -> str | None:
    if not rel or not rel.endswith((".py", ".pyw")):
        return None
    parts = rel.rsplit(".", 1)[0].split("/")
    if parts[-1] == "__init__":
        parts.pop()
    if not parts or not all(_IDENT.fullmatch(p) for p in parts):
        return None
    return ".".join(parts)


def _cwd() -> str:
    try:
        return os.getcwd().replace("\\", "/").rstrip("/")
    except OSError:
        return ""


def _ungroup(lines: list[str]) -> list[str]:
    """Keep the top-level exception group's own lines (without their margin), drop its sub-exceptions."""
    out: list[str] = []
    mode = 0  # 0: ordinary lines, 1: the group's own lines, 2: its sub-exceptions
    block_start = True
    for line in lines:
        if mode == 1:
            if line.startswith("  | ") or line == "  |":
                out.append(line[4:])
                continue
            if line.startswith("  +-"):
                mode = 2
                continue
            mode = 0
        elif mode == 2:
            if line.startswith(("    ", "  +")):
                continue
            mode = 0
        if line.startswith(_GROUP_HEADER):
            mode = 1
            out.append(HEADER)
        elif block_start and line.startswith("  | "):
            mode = 1
            out.append(line[4:])
        else:
            out.append(line)
        block_start = line in _MARKERS or (block_start and not line.strip())
    return out


def _parse_block(block: str, relation: str | None, cwd: str) -> tuple[ParsedException | None, bool]:
    """One chained block; the flag says that an unrelated second traceback follows (stop there)."""
    frames: list[Frame] = []
    syntax_loc: tuple[str, str] | None = None
    exc_at = -1
    for m in _ITEM.finditer(block):
        path, lineno, func, src, repeat, syntax_path, syntax_line, _ = m.groups()
        if path is not None:
            f = dict(_frame_base(path, cwd))
            if lineno != "None":
                f["lineno"] = int(lineno)
            func = func.rstrip()
            if func:
                f["function"] = func
            if src and not src.isspace():
                f["context_line"] = src
            frames.append(f)
        elif repeat is not None:
            if frames:
                frames.extend(dict(frames[-1]) for _ in range(min(int(repeat), MAX_REPEAT)))
        elif syntax_path is not None:
            syntax_loc = (syntax_path, syntax_line)
        else:
            exc_at = m.start() + 1
            break
    if exc_at < 0:
        return (make_exception("", None, "", frames, relation) if frames else None), False
    message = block[exc_at:].rstrip()
    again = message.find("\n" + HEADER)
    if again >= 0:
        message = message[:again].rstrip()
    first, _, rest = message.partition("\n")
    exc_line = _EXC_LINE.match(first)
    if exc_line is None:
        type_name, value = "", message
    else:
        type_name = exc_line.group("type")
        value = (exc_line.group("msg") or "") + ("\n" + rest if rest else "")
    module, short = split_python_type(type_name) if type_name else (None, "")
    if syntax_loc is not None and value and not value.endswith(")"):
        value = f"{value} ({syntax_loc[0]}, line {syntax_loc[1]})"
    return make_exception(short, module, value, frames, relation), again >= 0


def parse_python(text: str) -> list[ParsedException]:
    if "\r" in text:
        text = "\n".join(text.splitlines())
    first = _FIRST_FRAME.search(text)
    if first is not None and len(first.group(1)) > 2:
        # The whole traceback is indented (embedded in a log line): take the margin off.
        margin = first.group(1)[:-2]
        text = "\n".join(x[len(margin):] if x.startswith(margin) else x for x in text.splitlines())
    if "\n  + " in text or "\n  | " in text or text.startswith(("  + ", "  | ")):
        text = "\n".join(_ungroup(text.splitlines()))
    cwd = _cwd()
    text = "\n" + text  # every item of a block starts at a newline
    parts = _BLOCK_SPLIT.split(text) if _CAUSE in text or _CONTEXT in text else [text]
    out: list[ParsedException] = []
    for index in range(0, len(parts), 2):
        relation = _MARKERS[parts[index + 1]] if index + 1 < len(parts) else None
        block = parts[index] if index == 0 else "\n" + parts[index]
        exc, stop = _parse_block(block, relation, cwd)
        if exc is not None:
            out.append(exc)
        if stop:
            break
    if out:
        out[-1]["relation"] = None
    return out
