"""A backend that misbehaves on purpose, in its own process: ``python -m benchmarks.faultserver MODE``.

Prints ``{"port": N}`` on its first stdout line, then answers every request on 127.0.0.1:N as MODE says,
until SIGTERM or until its stdin closes (so it never outlives the harness):

- ``hang``: reads the request and never answers;
- ``slow``: answers 200 after 10 s;
- ``429-retry-after``: 429 with ``Retry-After: 60``;
- ``429-rate-limits``: 429 with ``X-Sentry-Rate-Limits: 60::organization`` (every category);
- ``413``, ``500``: that status, a short text body;
- ``garbage``: 200 with a body that is neither JSON nor protobuf.

("refused" needs no server: the harness points the backend at a port nothing listens on.)

One asyncio loop and HTTP/1.1 kept-alive connections, like ``benchmarks.sink``: a fault that answers at
once must cost its process no more CPU than the healthy sink does, or the comparison would measure the
servers (on 2 cores, a heavier server takes CPU from the app being measured).
"""
from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Optional

__all__ = ["MODES", "main"]

MODES = ("hang", "slow", "429-retry-after", "429-rate-limits", "413", "500", "garbage")
_MAX_HEAD = 64 * 1024


def _response(mode: str) -> bytes:
    status, reason, headers, body = {
        "slow": (200, "OK", "", b""),
        "429-retry-after": (429, "Too Many Requests", "Retry-After: 60\r\n", b""),
        "429-rate-limits": (
            429, "Too Many Requests", "X-Sentry-Rate-Limits: 60::organization\r\nRetry-After: 60\r\n", b""
        ),
        "413": (413, "Payload Too Large", "Content-Type: text/plain\r\n", b"refused on purpose"),
        "500": (500, "Internal Server Error", "Content-Type: text/plain\r\n", b"refused on purpose"),
        "garbage": (200, "OK", "Content-Type: application/json\r\n", b"\x00\xff{not json, not protobuf<html>"),
    }[mode]  # fmt: skip
    head = f"HTTP/1.1 {status} {reason}\r\n{headers}Content-Length: {len(body)}\r\n\r\n"
    return head.encode("latin-1") + body


async def _serve(mode: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    answer = b"" if mode == "hang" else _response(mode)
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > _MAX_HEAD:
                return
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip() or 0)
            await reader.readexactly(length)
            if mode == "hang":
                await asyncio.Event().wait()  # never
            if mode == "slow":
                await asyncio.sleep(10.0)
            writer.write(answer)
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
        pass
    except asyncio.CancelledError:  # the server stops with connections still hung or waiting
        pass
    finally:
        writer.close()


async def _main(mode: str) -> None:
    server = await asyncio.start_server(lambda r, w: _serve(mode, r, w), "127.0.0.1", 0)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.buffer.read1(4096) else None)
    await stop.wait()
    server.close()  # the hung connections are cancelled with the loop, not waited for


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in MODES:
        print(f"usage: python -m benchmarks.faultserver {{{','.join(MODES)}}}", file=sys.stderr)
        return 2
    asyncio.run(_main(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
