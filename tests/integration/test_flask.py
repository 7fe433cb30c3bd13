"""watch and trace on a real Flask app (werkzeug's threaded server in the target), every Python here.

The views are registered with ``@app.route`` at import time, so Flask calls them through its own
``app.view_functions`` registry: the probe must see those calls without touching the registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import VERSIONS, peeka_cli, python_for, target_site_env
from test_instrument import CliStream, child, http_get, value

pytestmark = [pytest.mark.integration, pytest.mark.parallel]


class FlaskApp:
    def __init__(self, spawn: Any, version: str, tmp_path: Path) -> None:
        portfile = tmp_path / "port"
        self.target = spawn(python_for(version), "flask_target.py", str(portfile), env=target_site_env())
        self.pid = self.target.pid
        self.port = int(portfile.read_text())

    def get(self, path: str) -> tuple[int, Any, float]:
        return http_get(self.port, path)

    def close(self) -> None:
        out = peeka_cli("detach", str(self.pid), "--json")
        assert out.returncode == 0, out.stderr + out.stdout
        assert self.get("/items/3")[0] == 200  # still serving after detach
        assert self.target.alive()
        err = self.target.stop()
        # werkzeug logs each request to stderr; anything else (a traceback) is a failure
        assert "Traceback" not in err and "peeka" not in err.lower(), err


@pytest.fixture
def flask_app(spawn, tmp_path):
    def make(version: str) -> FlaskApp:
        return FlaskApp(spawn, version, tmp_path)

    return make


@pytest.mark.parametrize("version", VERSIONS)
def test_watch_flask_view_sees_every_request(flask_app, version: str) -> None:
    app = flask_app(version)
    stream = CliStream("watch", str(app.pid), "flaskshop.views.get_item",
                       "{'id': params['item_id'], 'status': result.status_code, 'body': result.get_json()}",
                       "-n", "4", "--timeout", "60",
                       "--unsafe")  # result.get_json() is the app's (Flask's) method: a call needs --unsafe
    assert stream.start["functions"] == ["flaskshop.views.get_item"]
    ids = [3, 5, 7, 9]
    answers = {i: app.get(f"/items/{i}?code={'HALF' if i == 5 else ''}") for i in ids}
    events, end = stream.finish()
    assert end["reason"] == "limit" and end["dropped"] == 0
    seen = {}
    for e in events:
        assert e["function"] == "flaskshop.views.get_item" and e["location"] == "exit"
        assert e["cost_ms"] >= 3.0  # repo.find sleeps 3 ms
        got = value(e["value"])
        seen[got["id"]] = got
    assert sorted(seen) == ids
    for i, (status, body, _) in answers.items():
        assert status == 200 and seen[i]["status"] == 200
        assert seen[i]["body"] == body  # what the view returned is what the client received
    assert seen[5]["body"]["total"] == round(250 * 1.2)
    app.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_watch_flask_view_exception(flask_app, version: str) -> None:
    app = flask_app(version)
    stream = CliStream("watch", str(app.pid), "flaskshop.views.get_item", "-e", "-n", "1", "--timeout", "60")
    assert app.get("/items/2")[0] == 200
    assert app.get("/items/999")[0] == 404
    events, end = stream.finish()
    assert end["reason"] == "limit" and len(events) == 1
    e = events[0]
    assert e["location"] == "exception"
    assert value(child(e["value"], "params")) == {"item_id": 999}
    assert child(e["value"], "exception")["type"] == "werkzeug.exceptions.NotFound"
    app.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_trace_flask_view_costs_add_up(flask_app, version: str) -> None:
    app = flask_app(version)
    stream = CliStream("trace", str(app.pid), "flaskshop.views.get_item", "-n", "1", "--timeout", "60")
    status, _, seconds = app.get("/items/4?code=HALF")
    assert status == 200
    events, end = stream.finish()
    assert end["reason"] == "limit" and len(events) == 1
    tree = events[0]["tree"]
    assert tree["function"] == "flaskshop.views.get_item"
    kids = {c["function"]: c for c in tree["children"]}
    for name in ("flaskshop.repo.find", "flaskshop.pricing.discount", "flaskshop.pricing.with_tax"):
        assert name in kids and kids[name]["count"] == 1, list(kids)
    assert kids["flaskshop.repo.find"]["total_ms"] >= 3.0
    assert sum(c["total_ms"] for c in tree["children"]) <= tree["total_ms"] <= seconds * 1000
    app.close()
