"""A real Flask app served by werkzeug's threaded server, for the instrumentation tests.

    python flask_target.py PORTFILE      # prints "ready <pid> <port>"; needs Flask on sys.path

Its views are registered by ``@app.route`` at import time (Flask keeps them in
``app.view_functions``): a probe must see calls through that registry.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from flaskshop.views import app  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

server = make_server("127.0.0.1", 0, app, threaded=True)
port = server.server_port
with open(sys.argv[1], "w") as f:
    f.write(str(port))
print("ready %d %d" % (os.getpid(), port), flush=True)
server.serve_forever()
