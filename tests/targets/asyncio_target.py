"""A plain asyncio server (asyncio.start_server) answering HTTP/1.0 GET /items/N with JSON.

    python asyncio_target.py PORTFILE      # prints "ready <pid> <port>"
"""

import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from webshop import work  # noqa: E402


async def answer(path):
    return await work.get_item(int(path.rsplit("/", 1)[1]))


async def handle(reader, writer):
    request = (await reader.readline()).decode()
    while (await reader.readline()).strip():
        pass  # headers
    body = json.dumps(await answer(request.split()[1])).encode()
    writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                 % (len(body), body))
    await writer.drain()
    writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with open(sys.argv[1], "w") as f:
        f.write(str(port))
    print("ready %d %d" % (os.getpid(), port), flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
