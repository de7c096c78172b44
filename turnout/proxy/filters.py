"""Pure functions that apply a `Decision` to a request or response; shared by proxy and CLI.

```
Decision + request (RouteRequest) + picked Backend ──apply_request_filters──> UpstreamRequest
Decision + Backend + upstream headers   ──apply_response_filters─> headers for the client
Decision(Redirect) | Backend.redirect + request + scheme ──redirect_location──> Location
headers + host ──forward_headers──> end-to-end headers with Host (mirrors, upgrades)
```

Order of request filters: the route's header mutation, then the backend's (backendRef-level
filters run only for the picked backend, Gateway API §7.9); host rewrite and path rewrite
(the backend's wins over the route's: a backend's ReplacePrefixMatch is of the rule's prefix,
which the route's rewrite would already have replaced), keeping the query string (§7.4). Nothing here does I/O,
randomness or mirroring: the proxy decides whether a mirror or fault fires from the
per-million fractions on the decision.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from turnout.proxy.actions import Backend, Decision, Redirect
from turnout.proxy.config import UPSTREAM_SCHEME
from turnout.proxy.hosts import strip_port
from turnout.proxy.mutations import FullPath, rewrite_path
from turnout.proxy.request import HeaderPairs, RouteRequest, UpstreamRequest, header_pairs
from turnout.proxy.transport.messages import HOP_BY_HOP

log = logging.getLogger(__name__)

WELL_KNOWN_PORTS = {"http": 80, "https": 443}


def apply_request_filters(
    decision: Decision, request: RouteRequest, backend: Backend | None
) -> UpstreamRequest:
    """The request to send upstream to `backend` (None: route-level filters only)."""
    headers = decision.request_headers.apply(header_pairs(request.headers))
    host, rewrite = decision.host_rewrite, decision.path_rewrite
    if backend is not None:
        headers = backend.request_headers.apply(headers)
        host = backend.host_rewrite or host
        rewrite = backend.path_rewrite or rewrite
    authority = request.authority
    if host is not None and host != authority:
        authority = host
        if any(name.lower() == "host" for name, _ in headers):
            headers = tuple(
                ("Host" if n.lower() == "host" else n, host if n.lower() == "host" else v)
                for n, v in headers
            )
    path = request.path
    if rewrite is not None:
        path = rewrite_path(rewrite, path)
    return UpstreamRequest(
        method=request.method,
        scheme=UPSTREAM_SCHEME,
        authority=authority,
        path_and_query=f"{path}?{request.query}" if request.query else path,
        headers=headers,
    )


def apply_response_filters(
    decision: Decision, backend: Backend | None, status: int, headers: Sequence[tuple[str, str]]
) -> HeaderPairs:
    """Response headers after the route's, then the backend's, response header filter.

    Applied whatever `status` is (Envoy does the same for upstream and local replies); the
    status is taken so a future filter that depends on it keeps this signature.
    """
    out = decision.response_headers.apply(headers)
    if backend is not None:
        out = backend.response_headers.apply(out)
    return out


def redirect_location(
    decision: Decision, request: RouteRequest, scheme: str, backend: Backend | None = None
) -> str:
    """Location for a `Redirect` decision, or for the picked `backend`'s own redirect
    (Gateway API §7.2, §7.9); `scheme` is the request's. Either is built from the request
    as the client sent it: a route's URLRewrite changes only what an upstream is sent.

    Scheme: the filter's, else the request's. Host: the filter's, else the request host
    without its port. Port: the resolved filter port (``port_redirect: 0`` = none), left out
    when it is the scheme's well-known port. Path: full or prefix replacement (§7.4), else
    the request path. The query string is kept unless `strip_query` or a full replacement
    carries its own query.
    """
    action = backend.redirect if backend is not None and backend.redirect else decision.action
    if not isinstance(action, Redirect):
        raise ValueError(f"not a redirect: {type(action).__name__}")
    out_scheme = action.scheme or scheme
    host = action.host or strip_port(request.authority)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    port = action.port
    netloc = host if port is None or WELL_KNOWN_PORTS.get(out_scheme) == port else f"{host}:{port}"
    path = request.path if action.path is None else rewrite_path(action.path, request.path)
    own_query = isinstance(action.path, FullPath) and "?" in path
    query = "" if action.strip_query or own_query or not request.query else f"?{request.query}"
    return f"{out_scheme}://{netloc}{path}{query}"


def forward_headers(
    headers: list[tuple[str, str]] | tuple[tuple[str, str], ...], host: str
) -> list[tuple[str, str]]:
    """End-to-end headers with Host set to `host` (hop-by-hop and framing left out)."""
    out = [(n, v) for n, v in headers if n.lower() not in HOP_BY_HOP and n.lower() != "host"]
    out.insert(0, ("host", host))
    return out
