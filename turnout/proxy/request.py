"""What the runtime table sees of a request, and what it hands to the upstream side.

```
RequestInfo / RouteRequest ──decide()──> Decision ──apply_request_filters()──> UpstreamRequest
     │
     └── MatchContext (per request, only when a candidate route has header/query conditions)
            lazily joins repeated headers (RFC 7230) and parses the query string once
```

`RequestInfo.headers` is either a tuple of ``(name, value)`` pairs or a case-insensitive
multidict (aiohttp's `CIMultiDictProxy`, anything with `getall`). A `RouteRequest`'s `path`
is in normal form (`paths.py`: merged slashes, no dot segments, unreserved escapes decoded):
the handler normalizes the proxy's requests before routing, and `RequestInfo` normalizes its
own path when it is built (`refusal` says why a path cannot be). Nothing here reads bodies.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable
from urllib.parse import unquote

from turnout.proxy.paths import Refusal, normalize_any

log = logging.getLogger(__name__)

HeaderPairs = tuple[tuple[str, str], ...]


@runtime_checkable
class MultiHeaders(Protocol):
    """A case-insensitive multidict of header values (e.g. `multidict.CIMultiDictProxy`)."""

    def getall(self, key: str, default: list[str], /) -> list[str]: ...

    def items(self) -> Iterable[tuple[str, str]]: ...


Headers = HeaderPairs | list[tuple[str, str]] | MultiHeaders


class RouteRequest(Protocol):
    """What routing reads of a request: `RequestInfo`, or the proxy's `IncomingRequest`
    (whose headers are decoded only if a route asks for them). `path` is normalized
    (`paths.normalize_path`): what routes, policies and the backend see alike."""

    @property
    def method(self) -> str: ...
    @property
    def authority(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def query(self) -> str: ...
    @property
    def headers(self) -> Headers: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestInfo:
    """One downstream request, as far as routing needs it (`mesh routes explain`, `mesh
    test`): its path is normalized as the proxy normalizes the requests it receives."""

    method: str
    """Upper-case HTTP method token."""
    authority: str
    """Host header / ``:authority``, possibly with ``:port``."""
    path: str
    """Path without the query string, normalized when built (`paths.normalize_any`); as
    given when it is refused."""
    query: str = ""
    """Raw query string without the leading ``?``; empty = none (never normalized)."""
    headers: Headers = ()
    """Request headers: ``(name, value)`` pairs in any case, or a case-insensitive multidict."""
    raw_path: str = field(init=False, compare=False)
    """The path as given."""
    refusal: Refusal | None = field(init=False, compare=False)
    """Why the proxy would answer 400 for this path; None: it routes the normalized one."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "raw_path", self.path)
        normal = normalize_any(self.path)
        refused = isinstance(normal, Refusal)
        object.__setattr__(self, "refusal", normal if refused else None)
        if not refused:
            object.__setattr__(self, "path", normal)

    @classmethod
    def from_target(
        cls, method: str, authority: str, target: str, *, headers: Headers = ()
    ) -> RequestInfo:
        """Split a request target ``/path?query`` into path and query."""
        path, _, query = target.partition("?")
        return cls(method=method, authority=authority, path=path, query=query, headers=headers)


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamRequest:
    """The request to send to the picked backend, after the route's request filters."""

    method: str
    scheme: str
    authority: str
    """Host to send (``Host`` / ``:authority``), after any host rewrite."""
    path_and_query: str
    """Path after any rewrite, plus ``?query`` when the request had one (rewrites keep it)."""
    headers: HeaderPairs
    """Headers after the header mutations, in order; names keep the case they were given."""


def header_pairs(headers: Headers) -> HeaderPairs:
    """Return headers as a tuple of pairs whatever their container."""
    if isinstance(headers, tuple):
        return headers
    if isinstance(headers, list):
        return tuple(headers)
    return tuple(headers.items())


def join_headers(headers: Headers) -> dict[str, str]:
    """Lower-cased name -> every value of that name joined with "," (RFC 7230 §3.2.2)."""
    joined: dict[str, str] = {}
    for name, value in headers if isinstance(headers, tuple | list) else headers.items():
        key = name.lower()
        prev = joined.get(key)
        joined[key] = value if prev is None else f"{prev},{value}"
    return joined


def parse_query(query: str) -> dict[str, str]:
    """Name -> first value; names are case-sensitive, ``%XX`` decoded, ``+`` left alone."""
    params: dict[str, str] = {}
    if not query:
        return params
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "%" in name:
            name = unquote(name)
        if name not in params:
            params[name] = unquote(value) if "%" in value else value
    return params


class MatchContext:
    """Per-request lazy views used by header and query conditions.

    Created only when a candidate route has conditions beyond path and method, so the common
    path-only lookup allocates nothing. Each view is computed at most once per request.
    """

    __slots__ = ("_headers", "_query", "request")

    def __init__(self, request: RouteRequest) -> None:
        self.request = request
        self._headers: dict[str, str] | None = None
        self._query: dict[str, str] | None = None

    def header(self, name: str) -> str | None:
        """Joined value of the lower-cased header `name`, None when absent.

        The pseudo-headers ``:method``, ``:authority`` and ``:path`` read the request line.
        """
        if name[:1] == ":":
            return self._pseudo(name)
        headers = self.request.headers
        if not isinstance(headers, tuple | list):
            values = headers.getall(name, [])
            return ",".join(values) if values else None
        if self._headers is None:
            self._headers = join_headers(headers)
        return self._headers.get(name)

    def query_param(self, name: str) -> str | None:
        """First value of the query parameter `name` (case-sensitive), None when absent."""
        if self._query is None:
            self._query = parse_query(self.request.query)
        return self._query.get(name)

    def _pseudo(self, name: str) -> str | None:
        req = self.request
        if name == ":method":
            return req.method
        if name == ":authority":
            return req.authority
        if name == ":path":
            return f"{req.path}?{req.query}" if req.query else req.path
        return None
