"""An HTTP app whose routes call instr_lib, for the instrumentation tests.

    python instr_app.py [PORTFILE]   # prints "ready <pid> <port>" (and writes the port to PORTFILE)

Routes (GET): /handle/<id>, /alias/<id> (a ``from ... import`` alias), /registry/<id> (a dict filled
at import time), /gen/<n>, /fact/<n>, /deco/<n>, /parse/<text> (400 on ValueError), /async/<n>, /agen/<n> (an async generator),
/account/<cents>, /burst/<n> (n calls of price, timed), /check (is instr_lib.handle exactly as it was at import?).
"""

import asyncio
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import instr_lib  # noqa: E402
from instr_lib import handle as alias_handle  # noqa: E402

ORIGINAL_CODE = instr_lib.handle.__code__
ORIGINAL_KWDEFAULTS = instr_lib.handle.__kwdefaults__
HANDLERS = {"user": instr_lib.handle}  # a registry filled at import time: holds the function itself
ACCOUNT = instr_lib.Account("alice")


def check():
    out = {
        "same_code": instr_lib.handle.__code__ is ORIGINAL_CODE,
        "equal_code": instr_lib.handle.__code__ == ORIGINAL_CODE,
        "kwdefaults": repr(instr_lib.handle.__kwdefaults__),
        "same_kwdefaults": instr_lib.handle.__kwdefaults__ is ORIGINAL_KWDEFAULTS,
        "signature": "__signature__" in instr_lib.handle.__dict__,
        "tools": None,
    }
    if hasattr(sys, "monitoring"):
        out["tools"] = [sys.monitoring.get_tool(i) for i in range(6)]
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):  # noqa: N802
        parts = self.path.strip("/").split("/")
        route, arg = parts[0], (parts[1] if len(parts) > 1 else "")
        try:
            if route == "handle":
                body = instr_lib.handle(int(arg))
            elif route == "alias":
                body = alias_handle(int(arg))
            elif route == "registry":
                body = HANDLERS["user"](int(arg))
            elif route == "gen":
                body = list(instr_lib.countdown(int(arg)))
            elif route == "fact":
                body = instr_lib.fact(int(arg))
            elif route == "deco":
                body = instr_lib.decorated(int(arg))
            elif route == "parse":
                body = instr_lib.parse(arg)
            elif route == "async":
                body = asyncio.run(instr_lib.fetch(int(arg)))
            elif route == "agen":
                body = asyncio.run(instr_lib.collect_ticks(int(arg)))
            elif route == "account":
                body = ACCOUNT.balance(int(arg))
            elif route == "burst":
                started = time.perf_counter()
                for i in range(int(arg)):
                    instr_lib.price(i)
                body = {"seconds": time.perf_counter() - started}
            elif route == "check":
                body = check()
            elif route == "quit":
                try:
                    instr_lib.give_up(int(arg))
                except SystemExit as exc:
                    body = {"exit": exc.code}
            else:
                self.send_error(404)
                return
        except ValueError as exc:
            self._reply(400, {"error": str(exc)})
            return
        self._reply(200, body)

    def _reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):  # keep stderr clean: the tests assert it stays empty
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            f.write(str(port))
    print("ready %d %d" % (os.getpid(), port), flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
