"""The request a call serves: its W3C trace context and HTTP facts, for a target without OpenTelemetry.

Read on the export stream's thread, never on the host's hot path, from what was kept of the call:
its arguments (a WSGI environ, an ASGI scope, a request object of Flask/werkzeug, Django,
Starlette/FastAPI or aiohttp), its result (a response's status), and the context it ran in (a
``contextvars`` snapshot, where Flask keeps the current request). A call that carries no request
costs a few type checks here; one without a ``traceparent`` header joins no trace.

The function is the request's server span (kind SERVER, ``http.request.method``, ``url.path``,
``http.route`` where known, ``http.response.status_code`` where its result says) when it received
the request itself (a WSGI/ASGI entry point, a view taking the request) or is the view Flask
dispatched the request to.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, NamedTuple, Optional

_HEX = frozenset("0123456789abcdef")


class Inbound(NamedTuple):
    parent: Optional[Dict[str, Any]]  # {"trace_id", "span_id", "flags", "tracestate"} from traceparent
    server: bool
    attributes: Dict[str, Any]


def parse_traceparent(value: Any, state: Any = None) -> Optional[Dict[str, Any]]:
    """A W3C ``traceparent`` (version 00, or a later one read as 00), or None when malformed."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    parts = value.strip().lower().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff" or (parts[0] == "00" and len(parts) != 4):
        return None
    version, trace_id, span_id, flags = parts[:4]
    if (len(trace_id) != 32 or len(span_id) != 16 or len(flags) != 2
            or not _HEX.issuperset(version + trace_id + span_id + flags)
            or trace_id == "0" * 32 or span_id == "0" * 16):
        return None
    if isinstance(state, bytes):
        state = state.decode("latin-1")
    return {"trace_id": trace_id, "span_id": span_id, "flags": int(flags, 16),
            "tracestate": state.strip() if isinstance(state, str) and state.strip() else None}


class _Request(NamedTuple):
    headers: Any  # get(lower-case name) -> value or None
    method: Any
    path: Any
    route: Any


def _environ(env: Mapping[str, Any], route: Any = None) -> _Request:
    return _Request(lambda name: env.get("HTTP_" + name.upper().replace("-", "_")), env.get("REQUEST_METHOD"),
                    env.get("PATH_INFO"), route)


def _scope(scope: Mapping[str, Any]) -> _Request:
    headers = {}
    for pair in scope.get("headers") or ():
        try:
            name, value = pair
            headers.setdefault(bytes(name).lower(), value)
        except (TypeError, ValueError):
            continue
    route = scope.get("route")  # FastAPI's APIRoute
    if route is None and scope.get("endpoint") is not None:
        # Starlette keeps the endpoint its router matched; the route template is the app's route for it.
        for candidate in getattr(scope.get("app"), "routes", None) or ():
            if getattr(candidate, "endpoint", None) is scope["endpoint"]:
                route = candidate
                break
    return _Request(lambda name: headers.get(name.encode()), scope.get("method"), scope.get("path"),
                    getattr(route, "path", None))


def _rule(url_rule: Any) -> Any:
    return getattr(url_rule, "rule", None)


def _as_request(value: Any) -> Optional[_Request]:
    """The request this value is or holds, if it is one a framework passes to its handlers."""
    if isinstance(value, dict):
        if "REQUEST_METHOD" in value and "PATH_INFO" in value:
            return _environ(value)  # a WSGI environ
        if value.get("type") in ("http", "websocket") and "headers" in value:
            return _scope(value)  # an ASGI scope
        return None
    if isinstance(value, (str, bytes, int, float, list, tuple)) or value is None:
        return None
    meta = getattr(value, "META", None)
    if isinstance(meta, dict) and "REQUEST_METHOD" in meta:  # Django's HttpRequest
        match = getattr(value, "resolver_match", None)
        return _environ(meta, getattr(match, "route", None))
    environ = getattr(value, "environ", None)
    if isinstance(environ, dict) and "REQUEST_METHOD" in environ:  # werkzeug/Flask's Request
        return _environ(environ, _rule(getattr(value, "url_rule", None)))
    scope = getattr(value, "scope", None)
    if isinstance(scope, dict) and scope.get("type") in ("http", "websocket"):  # Starlette/FastAPI's Request
        return _scope(scope)
    headers = getattr(value, "headers", None)
    if headers is not None and hasattr(headers, "get") and isinstance(getattr(value, "method", None), str):
        # aiohttp's web.Request (headers: a case-insensitive multidict)
        route = None
        try:
            route = value.match_info.route.resource.canonical
        except Exception:
            pass
        return _Request(headers.get, value.method, getattr(value, "path", None), route)
    return None


def _flask_request(context: Any) -> Optional[_Request]:
    """Flask's current request (its RequestContext is kept in a ContextVar), when the call ran in one."""
    for var, value in context.items():
        if getattr(var, "name", None) == "flask.request_ctx":
            return _as_request(getattr(value, "request", None))
    return None


def _is_view(context: Any, func: Any) -> bool:
    """Whether the function is the view Flask dispatched the current request to."""
    for var, value in context.items():
        if getattr(var, "name", None) == "flask.request_ctx":
            try:
                endpoint = value.request.url_rule.endpoint
                view = value.app.view_functions.get(endpoint)
                while hasattr(view, "__wrapped__"):
                    view = view.__wrapped__
                return view is func  # the function itself (below 3.12 its code is a probe's trampoline)
            except Exception:
                return False
    return False


def _status(result: Any) -> Optional[int]:
    for name in ("status_code", "status"):
        value = getattr(result, name, None)
        if type(value) is int:
            return value
    if type(result) is tuple and len(result) >= 2 and type(result[1]) is int:
        return result[1]  # a Flask view's (body, status)
    return None


def inbound(params: Optional[Mapping[str, Any]], context: Any, result: Any, func: Any) -> Optional[Inbound]:
    """What the call's request says, or None when the call carries no request."""
    request = None
    server = False
    for value in (params or {}).values():
        request = _as_request(value)
        if request is not None:
            server = True
            break
    if request is None and context is not None:
        request = _flask_request(context)
        server = request is not None and _is_view(context, func)
    if request is None:
        return None
    parent = None
    try:
        header = request.headers("traceparent")
        if header is not None:
            parent = parse_traceparent(header, request.headers("tracestate"))
    except Exception:
        parent = None
    attributes: Dict[str, Any] = {}
    if server:
        for key, value in (("http.request.method", request.method), ("url.path", request.path),
                           ("http.route", request.route)):
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            if isinstance(value, str) and value:
                attributes[key] = value
        status = _status(result)
        if status is not None:
            attributes["http.response.status_code"] = status
    return Inbound(parent, server, attributes)
