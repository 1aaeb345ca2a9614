"""A Zipkin and OTLP collector stand-in for the benchmark: accepts every request and throws the body away, fast.

Run with: python3 scripts/bench/sink.py PORT  (scripts/bench.sh starts it, pinned to the load generator's core)

It speaks just enough HTTP/1.1 for the kit's exporter (POST with Content-Length, keep-alive) and the readiness
ping (HEAD): each request is answered 202 with an empty body (200 for OTLP's `/v1/traces`, whose empty body is
an empty response message), but a read of a setting (`GET /properties/...`), which gets one fixed value with an
`ETag`, as the key-value store would answer it. Zipkin spans are counted by the occurrences of `"traceId"` in
each body (no JSON parsing, which would cost more than the server it measures); OTLP spans by walking the
protobuf message's three outer levels of length-delimited fields, without decoding a span. `GET /stats` returns
{"posts": N, "spans": N, "bytes": N}.
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
            elif request_line.startswith(b"GET /properties/"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: \"1\"\r\nContent-Length: 5\r\n\r\n"
                             b"bench")
            elif request_line.startswith(b"POST /v1/traces"):
                STATS["posts"] += 1
                STATS["spans"] += otlp_spans(body)
                STATS["bytes"] += len(body)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n")
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


def fields(data: bytes, wanted: int):
    """The length-delimited fields numbered `wanted` of a protobuf message, as memoryviews."""
    view, at = memoryview(data), 0
    while at < len(view):
        key, at = varint(view, at)
        number, kind = key >> 3, key & 7
        if kind == 2:
            length, at = varint(view, at)
            if number == wanted:
                yield view[at:at + length]
            at += length
        elif kind == 0:
            _, at = varint(view, at)
        elif kind in (1, 5):
            at += 8 if kind == 1 else 4
        else:
            raise ValueError(f"unexpected wire type {kind}")


def varint(view: memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = view[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def otlp_spans(body: bytes) -> int:
    """Spans in an ExportTraceServiceRequest: resource_spans (1) > scope_spans (2) > spans (2)."""
    return sum(1 for resource in fields(body, 1) for scope in fields(resource, 2) for _ in fields(scope, 2))


async def main(port: int) -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", port, limit=1 << 20)
    print(f"sink listening on {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
