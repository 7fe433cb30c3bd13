"""The agent's ``export`` stream itself, through the real client on a real Flask target:
conditions, sampling, redaction, value bounds, and that every call is either sent or counted.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from conftest import python_for, target_site_env
from peeka_agent.protocol import End
from test_export import http_get

from peeka.attach import attach, detach
from peeka.errors import UsageError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90), pytest.mark.parallel]


def collect(stream: Any, until: Any, timeout: float = 20.0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    spans: list[dict[str, Any]] = []
    stats: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    for message in stream:
        assert not isinstance(message, End), message.reason
        data = message.data
        (spans.extend(data["spans"]) if data["kind"] == "spans" else stats.append(data))
        if until(spans, stats) or time.monotonic() > deadline:
            break
    return spans, stats


@pytest.mark.parametrize("version", ["3.12", "3.14"])
def test_export_stream_conditions_sampling_redaction_and_accounting(spawn, tmp_path, version: str) -> None:
    target = spawn(python_for(version), "flask_target.py", str(tmp_path / "port"), env=target_site_env())
    port = int((tmp_path / "port").read_text())
    client, _ = attach(target.pid, timeout=30)
    with client:
        with pytest.raises(UsageError, match="sample for 'x' must be a ratio"):
            client.request("export", {"watch": [{"pattern": "x", "sample": 2}]})
        with pytest.raises(UsageError, match="nothing to export"):
            client.request("export", {})
        stream = client.stream("export", {
            "watch": [{"pattern": "flaskshop.pricing.discount", "condition": "params['cents'] > 1000"},
                      {"pattern": "flaskshop.pricing.with_tax", "sample": 0.5},
                      "flaskshop.views.get_item"],
            # Governor off: this checks the buffer's accounting (every call a span or counted dropped);
            # under load the default 5% budget also samples calls out, which test_export_governor checks.
            "interval": 0.2, "max_value": 16, "redact": ["item"], "buffer": 5, "overhead_budget": 0})
        start = next(stream).data
        assert start["functions"] == ["flaskshop.pricing.discount", "flaskshop.pricing.with_tax",
                                      "flaskshop.views.get_item"]
        # The probes go in after that first answer (the stream's setup): the first stats say they are in.
        first = next(stream).data
        assert first["kind"] == "stats", first

        def hammer(ids: range) -> None:
            for i in ids:
                http_get(f"http://127.0.0.1:{port}/items/{i % 40 + 1}?code={'HALF' if i % 2 else 'x' * 50}")

        threads = [threading.Thread(target=hammer, args=(range(k, 200, 4),)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        def settled(spans: list[dict[str, Any]], stats: list[dict[str, Any]]) -> bool:
            if not stats:
                return False
            views = {r["function"]: r["total"]["count"] for r in stats[-1]["functions"]}
            return views.get("flaskshop.views.get_item") == 200 and len(stats) >= 2

        spans, stats = collect(stream, settled)
    detach(target.pid)
    counts = {r["function"]: r["total"]["count"] for r in stats[-1]["functions"]}
    assert counts == {"flaskshop.pricing.discount": 200, "flaskshop.pricing.with_tax": 200,
                      "flaskshop.views.get_item": 200}  # exact, whatever was sampled, filtered or dropped
    by_name: dict[str, list[dict[str, Any]]] = {}
    for s in spans:
        by_name.setdefault(s["name"], []).append(s)
    views = by_name.get("flaskshop.views.get_item", [])
    dropped = stats[-1]["dropped"]
    # every call of the unconditioned view is a span or counted as dropped (the buffer holds only 5)
    sampled = len(by_name.get("flaskshop.pricing.with_tax", []))
    discounts = by_name.get("flaskshop.pricing.discount", [])
    assert len(views) <= 200 and len(views) + dropped >= 200
    assert all(int(s["attributes"]["peeka.arg.cents"]) > 1000 for s in discounts)  # the condition held
    assert sampled < 150  # about half of with_tax's 200 calls were sampled out (binomial: 100 +- 7)
    for s in views:
        assert s["attributes"]["peeka.arg.item_id"] == "[redacted]"  # a user addition to the list
        assert len(s["attributes"]["peeka.result"]) <= 16 + 3  # bounded repr
        assert s["start_ns"] < s["end_ns"] and s["thread"] and s["parent"] is None
    for s in discounts:
        assert len(s["attributes"]["peeka.arg.code"]) <= 16 + 3
