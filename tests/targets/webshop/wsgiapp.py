"""A plain WSGI app for gunicorn."""

import json

from webshop import work


def view(path):
    return work.get_item_sync(int(path.rsplit("/", 1)[1]))


def application(environ, start_response):
    body = json.dumps(view(environ["PATH_INFO"])).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
