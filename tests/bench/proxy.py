"""A small asyncio HTTP/1.1 proxy for benchmarks and fault tests: adds latency and, optionally,
503s.

    python tests/bench/proxy.py --upstream http://127.0.0.1:PORT --port P --latency-ms 20 \
        [--fail-rate 0.1]

It forwards each request on a kept-alive upstream connection of its own client connection, sleeping
--latency-ms first; with --fail-rate it answers that share of POST/PUT requests with a 503 instead.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import urllib.parse


async def read_message(
    reader: asyncio.StreamReader, is_response: bool = False
) -> tuple[bytes, bytes] | None:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length, chunked = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        body = b""
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            body += size_line + chunk
            if size == 0:
                break
        return head, body
    body = await reader.readexactly(length) if length else b""
    return head, body


async def handle(client_r, client_w, host, port, latency, fail_rate, rng, stats):
    up_r = up_w = None
    try:
        while True:
            try:
                head, body = await read_message(client_r)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            await asyncio.sleep(latency)
            stats["requests"] += 1
            method = head.split(b" ", 1)[0]
            if fail_rate and method in (b"POST", b"PUT") and rng.random() < fail_rate:
                stats["failed"] += 1
                payload = b'{"error": {"code": 503, "message": "injected by the proxy"}}'
                client_w.write(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
                )
                await client_w.drain()
                continue
            if up_w is None:
                up_r, up_w = await asyncio.open_connection(host, port)
            up_w.write(head + body)
            await up_w.drain()
            rhead, rbody = await read_message(up_r, is_response=True)
            client_w.write(rhead + rbody)
            await client_w.drain()
    finally:
        client_w.close()
        if up_w is not None:
            up_w.close()


async def serve(
    upstream: str, port: int, latency_ms: float, fail_rate: float, seed: int = 1
) -> None:
    target = urllib.parse.urlsplit(upstream)
    rng = random.Random(seed)
    stats = {"requests": 0, "failed": 0}
    server = await asyncio.start_server(
        lambda r, w: handle(
            r, w, target.hostname, target.port, latency_ms / 1000, fail_rate, rng, stats
        ),
        "127.0.0.1",
        port,
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    args = parser.parse_args()
    asyncio.run(serve(args.upstream, args.port, args.latency_ms, args.fail_rate))


if __name__ == "__main__":
    main()
