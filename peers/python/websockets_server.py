"""Benchmark peer: Python `websockets` (Debian's python3-websockets) echo
server with the replies upper-cased, each message answered with one of its
type (bytes.upper() for binary: ASCII a-z, as upecho's ascii transform).
Run with Debian's interpreter: `/usr/bin/python3 peers/python/websockets_server.py 9000`.
"""
import asyncio
import sys

import websockets


async def echo(ws, *_path):
    async for message in ws:
        await ws.send(message.upper())


async def main(port):
    async with websockets.serve(echo, "127.0.0.1", port, compression=None, max_size=None):
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
