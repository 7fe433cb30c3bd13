"""A small web shop that Peeka's demo attaches to: a real HTTP server (stdlib only) and its traffic.

    python examples/shop.py [PORT]      # serves /item/<id>, /cart, /slow; drives itself with a client thread
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INVENTORY = {i: {"id": i, "name": f"item-{i}", "price": round(1.5 * i, 2), "stock": 10 + i} for i in range(1, 51)}


class Cart:
    def __init__(self) -> None:
        self.lines: list[tuple[int, int]] = []

    def add(self, item_id: int, quantity: int) -> float:
        item = INVENTORY[item_id]  # KeyError for unknown items: a real failure to observe
        self.lines.append((item_id, quantity))
        return item["price"] * quantity

    def total(self) -> float:
        return sum(INVENTORY[i]["price"] * q for i, q in self.lines)


CARTS: dict[str, Cart] = {}


def lookup_item(item_id: int) -> dict:
    time.sleep(0.002)  # a "database" round trip
    return INVENTORY[item_id]


def price_with_tax(price: float, rate: float = 0.2) -> float:
    return round(price * (1 + rate), 2)


def handle_item(item_id: int) -> dict:
    item = lookup_item(item_id)
    return {"item": item, "price": price_with_tax(item["price"])}


def handle_cart(user: str, item_id: int, quantity: int) -> dict:
    cart = CARTS.setdefault(user, Cart())
    cart.add(item_id, quantity)
    return {"user": user, "total": cart.total()}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        try:
            parts = self.path.strip("/").split("/")
            if parts[0] == "item":
                body = handle_item(int(parts[1]))
            elif parts[0] == "cart":
                body = handle_cart(parts[1], int(parts[2]), int(parts[3]))
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (KeyError, ValueError, IndexError) as exc:
            self.send_error(400, str(exc))

    def log_message(self, format: str, *args: object) -> None:
        pass


def traffic(port: int, stop: threading.Event) -> None:
    rng = random.Random(7)
    while not stop.is_set():
        if rng.random() < 0.6:
            url = f"http://127.0.0.1:{port}/item/{rng.randint(1, 55)}"
        else:
            url = f"http://127.0.0.1:{port}/cart/user{rng.randint(1, 5)}/{rng.randint(1, 55)}/{rng.randint(1, 3)}"
        try:
            urllib.request.urlopen(url, timeout=5).read()
        except Exception:
            pass
        stop.wait(0.05)


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    stop = threading.Event()
    threading.Thread(target=traffic, args=(server.server_address[1], stop), name="traffic", daemon=True).start()
    print("ready", os.getpid(), server.server_address[1], flush=True)
    try:
        server.serve_forever()
    finally:
        stop.set()


if __name__ == "__main__":
    main()
