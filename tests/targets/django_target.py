"""A Django app served by Django's own development server (django.core.servers.basehttp, threaded,
as ``runserver --noreload`` serves it).

    python django_target.py PORTFILE      # prints "ready <pid> <port>"; needs the web target site
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import django  # noqa: E402
from django.conf import settings  # noqa: E402

settings.configure(DEBUG=False, ROOT_URLCONF="webshop.djangourls", ALLOWED_HOSTS=["127.0.0.1"],
                   SECRET_KEY="test-only", INSTALLED_APPS=[], MIDDLEWARE=[], LOGGING_CONFIG=None)
django.setup()
import webshop.djangourls  # noqa: E402,F401  (runserver's system checks load the URLconf at start too)
from django.core.servers import basehttp  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402


def bound(port):
    with open(sys.argv[1], "w") as f:
        f.write(str(port))
    print("ready %d %d" % (os.getpid(), port), flush=True)


class QuietHandler(basehttp.WSGIRequestHandler):
    def log_message(self, *args):
        pass  # no access log on stderr: the test reads stderr for tracebacks


basehttp.WSGIRequestHandler = QuietHandler
basehttp.run("127.0.0.1", 0, get_wsgi_application(), threading=True, on_bind=bound)
