"""uvicorn (asyncio loop, h11) serving a Starlette app whose async view awaits webshop.work.

    python asgi_target.py PORTFILE      # prints "ready <pid> <port>"; needs the web target site
"""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402
from webshop import work  # noqa: E402


async def item_view(request):
    return JSONResponse(await work.get_item(int(request.path_params["item"])))


app = Starlette(routes=[Route("/items/{item:int}", item_view)])
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(64)
port = sock.getsockname()[1]
with open(sys.argv[1], "w") as f:
    f.write(str(port))
print("ready %d %d" % (os.getpid(), port), flush=True)
config = uvicorn.Config(app, loop="asyncio", http="h11", lifespan="off", log_level="warning", access_log=False)
uvicorn.Server(config).run(sockets=[sock])
