"""The answers the proxy makes itself, each saying why in `l5d-proxy-error`, as Linkerd's does.

```
status  l5d-proxy-error             when
404     no route                    nothing in the Service's routes matches (Gateway API: 404)
404     unknown destination         the Host names no Service port this proxy knows
500     invalid backend             the share of an unresolved backendRef (body: its reason)
500     no backends                 a rule without backendRefs, or with every weight 0
500     invalid filter              a filter that cannot be applied (body: which and why)
503     no ready endpoints          the backend's Service has no ready endpoint
503     service in fail-fast        every endpoint is backed off after consecutive failures
503     connection refused          the endpoint refused the connection (inbound: 502)
503     connect failed              the connection could not be opened otherwise (inbound: 502)
503     connection closed before    the endpoint closed or reset it before any response byte
        response                    (inbound: 502)
504     request timeout             the route's request timeout expired (timeouts.request)
504     backend request timeout     the last try's own timeout expired (timeouts.backendRequest)
504     connect timeout             the TCP connect did not finish in time
504     upstream read timeout       no timeout on the route, and the upstream was silent for
                                    the pool's read timeout before the response started
502     upstream protocol error     malformed response, or the connection broke mid-exchange
502     upstream tls failed         mesh TLS to the endpoint failed: its certificate is not
                                    the expected identity or not of the trust bundle
502     endpoint not meshed /       mTLS required (--require-mtls, l5d-require-id) and not
        endpoint identity mismatch  possible: nothing sent (`outbound_tls.py` makes these)
        / mesh tls disabled
502     invalid upstream request    request filters made a head that cannot be sent
500     unexpected error            a bug of ours (logged)
400/408 malformed request body /    the client's own body broke (its status; nothing to
        request body timeout        answer when it disconnected)
any     fault injected              a fault abort (gRPC: 200 with grpc-status/grpc-message)
```

Each `Answer` builds its headers and body once: the constants below at import, those of an
invalid backend, a direct response or a fault when the table is built (their dataclasses in
`actions.py`), never per request. The body is the cause, then ``: detail`` where there is
one. A retry the budget or the limit refuses makes no answer of its own: the last try's
stands (its response, or the answer for its error). Redirects and upstream responses carry
no `l5d-proxy-error`. Not here: Linkerd's ``l5d-proxy-connection: close`` (we keep the
client's connection open), answers the transport makes for a malformed request head
(400/431/408, `transport/heads.py`).
"""

from __future__ import annotations

import logging
from typing import Final

from turnout.proxy.errors import (
    ClientError,
    UpstreamConnectError,
    UpstreamConnectTimeout,
    UpstreamReadTimeout,
    UpstreamTimeout,
    UpstreamTlsError,
)
from turnout.proxy.transport.messages import Headers

log = logging.getLogger(__name__)

L5D_PROXY_ERROR: Final = "l5d-proxy-error"
"""The header naming the cause of an answer the proxy made (Linkerd's name)."""


class Answer:
    """One answer the proxy makes itself: status, cause, headers and body, built once.
    `headers` is shared by every request given this answer and never changed."""

    __slots__ = ("body", "cause", "grpc_status", "headers", "status")

    def __init__(
        self, status: int, cause: str, *, detail: str = "", grpc_status: int | None = None
    ) -> None:
        self.status = status
        self.cause = cause
        """The `l5d-proxy-error` value: a short lowercase phrase, the same for every request."""
        self.grpc_status = grpc_status
        """gRPC status of a gRPC answer (HTTP 200, no body); None: an HTTP answer."""
        header = _header_value(cause)
        if grpc_status is None:
            text = f"{cause}: {detail}" if detail else cause
            self.body = f"{text}\n".encode()
            self.headers: Headers = [
                ("content-type", "text/plain; charset=utf-8"),
                (L5D_PROXY_ERROR, header),
            ]
        else:
            self.body = b""
            self.headers = [
                ("content-type", "application/grpc"),
                ("grpc-status", str(grpc_status)),
                ("grpc-message", header),
                (L5D_PROXY_ERROR, header),
            ]

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.cause!r})"


def _header_value(text: str) -> str:
    """`text` as a header value: printable ASCII, at most 200 characters."""
    clean = "".join(c if " " <= c <= "~" else "?" for c in text)
    return clean[:200]


UNKNOWN_HOST = Answer(404, "unknown destination", detail="the Host header names no Service")
"""(The 404s of a known host, `table.NO_ROUTE` and `table.NO_LISTENER`, are direct responses.)"""
UNKNOWN_ADDRESS = Answer(
    404, "unknown destination", detail="no Service or endpoint has the address sent to"
)
"""A mesh request to an address (`--service-listeners`, an IP Host) the table does not know."""
MISDIRECTED = Answer(
    421, "misdirected request", detail="the Host header is not a hostname of the TLS listener"
)
"""HTTPS: the Host belongs to another listener than the one SNI chose (Gateway API)."""
NO_ENDPOINTS = Answer(503, "no ready endpoints")
FAIL_FAST = Answer(
    503, "service in fail-fast", detail="every endpoint is backed off after consecutive failures"
)
REQUEST_TIMEOUT = Answer(504, "request timeout")
BACKEND_REQUEST_TIMEOUT = Answer(504, "backend request timeout")
CONNECT_TIMEOUT = Answer(504, "connect timeout")
READ_TIMEOUT = Answer(504, "upstream read timeout")
PROTOCOL_ERROR = Answer(502, "upstream protocol error")
TLS_FAILED = Answer(502, "upstream tls failed")
"""Mesh TLS to the endpoint failed (wrong identity, untrusted certificate): Linkerd's 502."""
INVALID_UPSTREAM_REQUEST = Answer(502, "invalid upstream request")
UNEXPECTED = Answer(500, "unexpected error")

_CONNECT_CAUSES = ("connection refused", "connect failed", "connection closed before response")
_OUTBOUND_CONNECT = {c: Answer(503, c) for c in _CONNECT_CAUSES}
"""A connect error to a Service endpoint: 503, the endpoint is unavailable (GEP-1731 counts
it as retriable)."""
_INBOUND_CONNECT = {c: Answer(502, c) for c in _CONNECT_CAUSES}
"""A connect error to the local app: 502, as Linkerd's inbound proxy answers."""
_CLIENT = {400: Answer(400, "malformed request body"), 408: Answer(408, "request body timeout")}


def for_error(error: BaseException, *, inbound: bool, request_timeout: bool) -> Answer:
    """The answer for a try that ended in `error` before any response byte reached the
    client. `request_timeout`: a timeout was the request deadline's, not the try's own."""
    if isinstance(error, ClientError):
        return _client(error.status)
    if isinstance(error, UpstreamConnectTimeout):
        return CONNECT_TIMEOUT
    if isinstance(error, UpstreamReadTimeout):
        return READ_TIMEOUT
    if isinstance(error, UpstreamTimeout):
        return REQUEST_TIMEOUT if request_timeout else BACKEND_REQUEST_TIMEOUT
    if isinstance(error, UpstreamTlsError):
        return TLS_FAILED
    if isinstance(error, UpstreamConnectError):
        answers = _INBOUND_CONNECT if inbound else _OUTBOUND_CONNECT
        return answers[_connect_cause(error.__cause__)]
    return PROTOCOL_ERROR


def _connect_cause(cause: BaseException | None) -> str:
    """Why no response started, from the OS error the transport chained (if any)."""
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if cause is None or isinstance(cause, ConnectionError):
        return "connection closed before response"  # reset, aborted, closed, broken pipe
    return "connect failed"  # unreachable, unresolvable, ... (an OSError from connect)


def _client(status: int) -> Answer:
    answer = _CLIENT.get(status)
    if answer is None:
        answer = _CLIENT[status] = Answer(status, "client error")
    return answer
