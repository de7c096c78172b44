"""CORS on the proxy (Gateway API HTTPRoute `CORS` filter, GEP-1767), from a route's `Cors`.

```
for_request(cors, method, raw) -> (preflight answer's headers or None, headers to add)
preflight(cors, origin, method, headers) -> headers of the proxy's own answer to a preflight
                          (none: no match)
actual(cors, origin)     -> headers added to the response of an actual request (none: no match)
```

A preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered by the proxy
and never forwarded; an actual request is forwarded, its response gains the headers only when
its Origin matches. The fixed header values are joined once per table update (`Cors`)."""

from __future__ import annotations

from collections.abc import Iterable

from turnout.proxy.actions import Cors

HeaderList = list[tuple[str, str]]


def for_request(
    cors: Cors, method: str, raw_headers: Iterable[tuple[bytes, bytes]]
) -> tuple[HeaderList | None, HeaderList]:
    """`(headers of the preflight answer, None when not a preflight; headers the response
    of an actual request gains)`, from the request's raw headers."""
    origin = request_method = request_headers = None
    for name, value in raw_headers:
        lower = name.lower()
        if lower == b"origin":
            origin = value.decode("latin-1")
        elif lower == b"access-control-request-method":
            request_method = value.decode("latin-1")
        elif lower == b"access-control-request-headers":
            request_headers = value.decode("latin-1")
    if origin is None:
        return None, []
    if method == "OPTIONS" and request_method is not None:
        return preflight(cors, origin, request_method, request_headers), []
    return None, actual(cors, origin)


def matched_origin(cors: Cors, origin: str) -> str | None:
    """The Access-Control-Allow-Origin value for `origin`: `*` only when credentials are off
    and allowOrigins has `*`, else the origin itself; None when no pattern matches."""
    if cors.any_origin and not cors.allow_credentials:
        return "*"
    for pattern in cors.allow_origins:
        if pattern.fullmatch(origin):
            return origin
    return None


def _common(cors: Cors, origin: str) -> HeaderList | None:
    allow = matched_origin(cors, origin)
    if allow is None:
        return None
    out = [("access-control-allow-origin", allow)]
    if allow != "*":
        out.append(("vary", "Origin"))
    if cors.allow_credentials:
        out.append(("access-control-allow-credentials", "true"))
    return out


def preflight(
    cors: Cors, origin: str, request_method: str, request_headers: str | None = None
) -> HeaderList:
    """The proxy's answer to a preflight asking for `request_method` (and
    `request_headers`, Access-Control-Request-Headers): with credentials, a `*` in
    allowMethods or allowHeaders is answered with what was asked, never `*` (GEP-1767)."""
    out = _common(cors, origin)
    if out is None:
        return []
    if cors.allow_methods:
        out.append(("access-control-allow-methods", cors.methods_value or request_method))
    if cors.allow_headers:
        allowed = cors.headers_value if cors.headers_value is not None else request_headers
        if allowed:
            out.append(("access-control-allow-headers", allowed))
    if cors.max_age_s is not None:
        out.append(("access-control-max-age", str(cors.max_age_s)))
    return out


def actual(cors: Cors, origin: str) -> HeaderList:
    out = _common(cors, origin)
    if out is None:
        return []
    if cors.expose_value:
        out.append(("access-control-expose-headers", cors.expose_value))
    return out
