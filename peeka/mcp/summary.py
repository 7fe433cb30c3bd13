"""The short text that goes with each tool's structured result: what an assistant reads first.

One line or a few, built from the same JSON the result carries (never a second query of the target).
A summary that cannot be built from an unexpected document falls back to naming its keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _threads(r: dict[str, Any]) -> str:
    if "blocked" in r and "threads" not in r:
        return (f"{len(r.get('blocked') or [])} thread(s) waiting on locks, "
                f"{len(r.get('deadlocks') or [])} deadlock(s)")
    threads = r["threads"]
    busy = sorted((t for t in threads if t.get("cpu_percent") is not None), key=lambda t: -t["cpu_percent"])[:3]
    lines = [f"{r['count']} thread(s)" + ("; busiest: " + ", ".join(
        f"{t['name']} {t['cpu_percent']:.1f}% cpu" for t in busy) if busy else "")]
    for t in threads[:5]:
        top = (t.get("frames") or [{}])[0]
        if top:
            lines.append(f"  {t['name']}: {top.get('function')} {top.get('file')}:{top.get('line')}")
    return "\n".join(lines)


def _top(r: dict[str, Any]) -> str:
    reports = r["events"]
    if not reports:
        return f"top: no report ({r['end'].get('reason')})"
    last = reports[-1]
    proc = last.get("process", {})
    hot = ", ".join(f"{f['function']} {f['self_percent']:.1f}%" for f in last.get("functions", [])[:5])
    cpu = proc.get("cpu_percent")
    return (f"{last.get('samples', 0):g} samples, process cpu {'-' if cpu is None else f'{cpu:.1f}%'}; "
            f"hottest (self %): {hot or 'none'}")


def _memory(r: dict[str, Any]) -> str:
    if "tracemalloc" in r:
        facts = r["tracemalloc"]
        return (f"tracemalloc {'tracing' if facts.get('tracing') else 'not tracing'}; "
                f"{len(r.get('sites') or [])} allocation site(s) listed")
    rss = r["process"].get("rss_bytes")
    kinds = ", ".join(t["type"] for t in (r.get("types") or [])[:5])
    return f"rss {'-' if rss is None else f'{rss / 1048576:.1f} MiB'}; largest object types: {kinds or '-'}"


def _inspect(r: dict[str, Any]) -> str:
    if "instances" in r:
        return f"{r['total']} live instance(s) of {r['class']}, {r['count']} shown"
    value = r.get("value") or {}
    return f"{r['expression']} = {str(value.get('repr', value))[:300]}"


def _search(key: str) -> Callable[[dict[str, Any]], str]:
    def summary(r: dict[str, Any]) -> str:
        names = [e["name"] for e in r.get(key) or []]
        more = " (truncated: raise limit)" if r.get("truncated") else ""
        return f"{r['count']} match(es){more}: " + ", ".join(names[:10])
    return summary


def _tasks(r: dict[str, Any]) -> str:
    return r.get("note") or f"{len(r['loops'])} event loop(s), {r['count']} task(s)"


def _logger(r: dict[str, Any]) -> str:
    if "events" in r:
        return _stream(r)
    if "loggers" in r:
        return f"{sum(1 for e in r['loggers'] if not e.get('placeholder'))} logger(s)"
    return f"logger {r.get('name')}: level {r.get('previous_level')} -> {r.get('level')}"


def _stream(r: dict[str, Any]) -> str:
    start, end = r["start"], r["end"]
    what = start.get("affected") or ", ".join(start.get("functions", [])[:5])
    lost = f", {end['dropped']} dropped" if end.get("dropped") else ""
    return f"{len(r['events'])} event(s) from {what or 'the target'}; ended: {end.get('reason')}{lost}"


def _tt(r: dict[str, Any]) -> str:
    if "events" in r:
        return _stream(r)
    if "records" in r:
        return f"{len(r['records'])} record(s)"
    if "cleared" in r:
        return f"cleared {r['cleared']} record(s)"
    return f"record {r.get('index', '')} of {r.get('function')}, {r.get('cost_ms', 0):.3f} ms"


def _reset(r: dict[str, Any]) -> str:
    return r.get("note") or f"removed {r['count']} probe(s)" + (
        f"; still probed: {', '.join(r['remaining'])}" if r.get("remaining") else "")


def _detach(r: dict[str, Any]) -> str:
    return "agent detached; the target is as it was" if r.get("detached") else "no agent was running"


SUMMARIES: dict[str, Callable[[dict[str, Any]], str]] = {
    "ps": lambda r: f"{len(r['processes'])} Python process(es): " + ", ".join(
        f"{p['pid']} (Python {p['python']})" for p in r["processes"][:20]),
    "thread": _threads, "top": _top, "memory": _memory, "inspect": _inspect,
    "sc": _search("classes"), "sm": _search("functions"), "source": _search("sources"),
    "tasks": _tasks, "logger": _logger, "watch": _stream, "trace": _stream, "stack": _stream,
    "monitor": _stream, "tt": _tt, "reset": _reset, "detach": _detach,
}


def summarize(verb: str, result: dict[str, Any]) -> str:
    try:
        return f"{verb}: " + SUMMARIES[verb](result)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        return f"{verb}: result with {', '.join(sorted(result))}"
