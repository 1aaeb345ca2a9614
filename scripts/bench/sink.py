"""A Zipkin collector stand-in for the benchmark: accepts every request and throws the body away, fast.

Run with: python3 scripts/bench/sink.py PORT  (scripts/bench.sh starts it, pinned to the load generator's core)

It speaks just enough HTTP/1.1 for the kit's exporter (POST with Content-Length, keep-alive) and the readiness
ping (HEAD): each request is answered 202 with an empty body. Spans are counted by the occurrences of
`"traceId"` in each body (no JSON parsing, which would cost more than the server it measures), and
`GET /stats` returns {"posts": N, "spans": N, "bytes": N}.
"""

from __future__ import annotations

import asyncio
import json
import sys

STATS = {"posts": 0, "spans": 0, "bytes": 0}


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, _, header_block = head.partition(b"\r\n")
            length, close = 0, False
            for line in header_block.split(b"\r\n"):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
            body = await reader.readexactly(length) if length else b""
            if request_line.startswith(b"GET /stats"):
                payload = json.dumps(STATS).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(payload)).encode() + b"\r\n\r\n" + payload)
            else:
                if request_line.startswith(b"POST"):
                    STATS["posts"] += 1
                    STATS["spans"] += body.count(b'"traceId"')
                    STATS["bytes"] += len(body)
                writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", port, limit=1 << 20)
    print(f"sink listening on {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
