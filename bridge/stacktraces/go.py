"""Go stack traces: a panic's output and ``runtime/debug.Stack()`` (what OTel Go's
``trace.WithStackTrace(true)`` records). Only the first goroutine is read (the panicking one, or the
caller of ``debug.Stack``). Frames are printed newest first; they are reversed.
"""
from __future__ import annotations

import re

from bridge.stacktraces._common import Frame, ParsedException, basename, frame, make_exception

__all__ = ["parse_go", "split_go_function"]

_GOROUTINE = re.compile(r"goroutine \d+(?: gp=\S+ m=\S+(?: mp=\S+)?)? \[[^\]]*\]:\s*$")
_PANIC = re.compile(r"[ \t]*(?:(?P<kind>panic|fatal error)|.*?http: (?P<http>panic) serving \S+): (?P<msg>.*)")
_RECOVERED = (" [recovered]", " [recovered, repanicked]")
_FILE = re.compile(r"\t(?P<path>.+?):(?P<line>\d+)(?: \+0x[0-9a-fA-F]+)?(?: fp=0x\S+ sp=0x\S+ pc=0x\S+)?\s*$")
_CREATED = re.compile(r"created by (?P<func>\S+?)(?: in goroutine \d+)?\s*$")
# Top-level directories of the standard library: a function in one of them is not the app's.
_STDLIB = frozenset((
    "archive", "bufio", "builtin", "bytes", "cmp", "compress", "container", "context", "crypto", "database",
    "debug", "embed", "encoding", "errors", "expvar", "flag", "fmt", "go", "hash", "html", "image", "index",
    "internal", "io", "iter", "log", "maps", "math", "mime", "net", "os", "path", "plugin", "reflect", "regexp",
    "runtime", "slices", "sort", "strconv", "strings", "structs", "sync", "syscall", "testing", "text", "time",
    "unicode", "unique", "unsafe", "vendor", "weak",
))
_GOROOT_HINTS = ("/go/src/", "/golang/src/", "/go/pkg/mod/", "/pkg/mod/", "/vendor/", "/usr/lib/go", "/usr/local/go/")


def split_go_function(name: str) -> tuple[str | None, str]:
    """``github.com/x/y.(*T).M`` → ``("github.com/x/y", "(*T).M")``.

    Go escapes dots in the last element of a package path (``gopkg.in/yaml%2ev3``), so the first dot
    after the last slash ends the package; the escape is undone in the result.
    """
    slash = name.rfind("/", 0, name.find("(") if "(" in name else len(name))
    dot = name.find(".", slash + 1)
    if dot < 0:
        return None, name
    return name[:dot].replace("%2e", "."), name[dot + 1:]


def _strip_args(line: str) -> str:
    """``main.(*T).M(0xc000, {0x1, 0x2})`` → ``main.(*T).M``; ``main.f(...)`` → ``main.f``."""
    if not line.endswith(")"):
        return line
    depth = 0
    for i in range(len(line) - 1, -1, -1):
        c = line[i]
        if c == ")":
            depth += 1
        elif c == "(":
            depth -= 1
            if depth == 0:
                return line[:i] or line
    return line


def _in_app(module: str | None, path: str) -> bool:
    posix = path.replace("\\", "/")
    if any(hint in posix for hint in _GOROOT_HINTS):
        return False
    if module is None:
        return False
    first = module.split("/", 1)[0]
    return module == "main" or "." in first or first not in _STDLIB


def _frame(func_name: str, path: str, lineno: int) -> Frame:
    module, function = split_go_function(func_name)
    return frame(
        filename=basename(path), abs_path=path, lineno=lineno, function=function, module=module,
        in_app=_in_app(module, path),
    )


def parse_go(text: str) -> list[ParsedException]:
    kind = ""
    messages: list[str] = []
    frames: list[Frame] = []
    pending: str | None = None  # a function line waiting for its file line
    state = 0  # 0: before the goroutine, 1: in its frames, 2: done
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        if state == 0:
            m = _PANIC.match(line)
            if m is not None:
                kind = m.group("kind") or m.group("http")
                message = m.group("msg").rstrip()
                for suffix in _RECOVERED:
                    if message.endswith(suffix):
                        message = message[: -len(suffix)]
                messages.append(message)
            elif _GOROUTINE.match(line):
                state = 1
            elif messages and line.strip() and not line.startswith("[signal ") and not line.startswith("\t"):
                messages[-1] += "\n" + line  # a multi-line panic message
            continue
        if state == 2:
            break
        if not line.strip():
            if frames or pending is not None:
                state = 2
            continue
        if line.startswith("\t"):
            f = _FILE.match(line)
            if f is not None and pending is not None:
                frames.append(_frame(pending, f.group("path"), int(f.group("line"))))
            pending = None
            continue
        if line.startswith("goroutine "):
            state = 2
            continue
        created = _CREATED.match(line)
        pending = created.group("func") if created is not None else _strip_args(line.strip())
    if not frames and not messages:
        return []
    value = messages[-1] if messages else ""
    return [make_exception(kind, None, value, frames[::-1])]
