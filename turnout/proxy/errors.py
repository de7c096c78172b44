"""Exceptions raised by the proxy: one tree.

```
ProxyError
 ├── TableError              an xDS update that cannot be applied (becomes the NACK reason)
 ├── ShadowedRouteError      routes out of precedence order (index.py); table.py raises the
 │                           TableError naming the route from it, so it never leaves the table
 ├── UpstreamError           an exchange with an upstream endpoint failed (transport.client)
 │    ├── UpstreamConnectError   no response started: refused, reset or closed before any
 │    │    │                     response byte; safe to retry when the body is replayable
 │    │    └── UpstreamConnectTimeout  (also an UpstreamTimeout) the TCP connect timed out
 │    ├── UpstreamTlsError       mesh TLS to the endpoint failed: its certificate does not
 │    │                         verify against the bundle or is not the expected identity
 │    ├── UpstreamTimeout        the per-request deadline (`timeout_ms`) expired
 │    │    └── UpstreamReadTimeout  no deadline, and the upstream sent nothing for the
 │    │                             pool's `read_timeout_ms`
 │    └── UpstreamProtocolError  malformed response, or reset after the response started
 ├── ClientError             the downstream client broke its request (transport.server):
 │                           malformed or timed-out body, or disconnected mid-request
 ├── XdsStreamError          the ADS stream could not be opened or broke (xds_client); the
 │                           client backs off and reconnects, the last good table serving
 ├── ListenError             a listener or the admin port cannot be bound (runner); `mesh
 │                           proxy` prints it as one line and exits 2
 └── WorkerError             a `--workers` child died or was silent during start-up (workers)
```

Every one pickles (`mesh proxy --workers` runs the proxy in child processes). The transport
raises these once, at its boundary: OS and httptools exceptions never leave
`turnout.proxy.transport` (each is chained as `__cause__`), grpc's never leave `xds_client`.
What a client is answered for an upstream or client error is `answers.py`'s. User mistakes
in routes are diagnostics in the engine, not exceptions here: by the time resources reach
the proxy, a `TableError` means the control plane sent something the contract in
`docs/xds.md` does not allow, or that this proxy cannot honour.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class ProxyError(Exception):
    """Base of every exception the proxy raises on purpose."""


class TableError(ProxyError):
    """An xDS resource that cannot be turned into a runtime table.

    The message names the resource (type and name, plus the route inside it) and the field
    path, e.g. ``RouteConfiguration "web.shop.svc.cluster.local:80" virtual_hosts[0].routes[2]
    (httproute/shop/web/rule/0/match/0) match.safe_regex.regex: invalid regex ...``.
    """

    def __init__(self, resource: str, field: str, message: str) -> None:
        self.resource = resource
        """Resource type and name, plus the route within it when there is one."""
        self.field = field
        """Field path inside the resource, protobuf field names, ``[i]`` for list items."""
        self.message = message
        super().__init__(f"{resource} {field}: {message}")

    def __reduce__(self) -> tuple[object, tuple[str, str, str]]:
        return type(self), (self.resource, self.field, self.message)


class ShadowedRouteError(ProxyError):
    """Routes of one virtual host out of Gateway API precedence order: a route listed after
    one that would shadow it (`index.RouteIndex.build`). Never leaves the proxy as such:
    `table.py` turns it into the `TableError` that names the route (the NACK reason)."""

    def __init__(self, position: int, message: str) -> None:
        self.position = position
        """Index (in the virtual host's routes) of the later, shadowed route."""
        super().__init__(message)

    def __reduce__(self) -> tuple[object, tuple[int, str]]:
        return type(self), (self.position, str(self))


class UpstreamError(ProxyError):
    """An exchange with an upstream endpoint failed; `endpoint` is its ``(host, port)``."""

    def __init__(self, endpoint: tuple[str, int], message: str) -> None:
        self.endpoint = endpoint
        """The ``(host, port)`` the request was sent to."""
        self.message = message
        """What happened, lowercase, without headers or bodies."""
        super().__init__(f"{endpoint[0]}:{endpoint[1]}: {message}")

    def __reduce__(self) -> tuple[object, tuple[tuple[str, int], str]]:
        return type(self), (self.endpoint, self.message)


class UpstreamConnectError(UpstreamError):
    """No response started: connect refused or failed, or the connection was closed or reset
    before a single response byte arrived. The upstream did not answer this request; whether
    it processed it is unknown unless the connection never opened."""


class UpstreamTlsError(UpstreamError):
    """Mesh TLS to the endpoint failed (no request byte was sent): the server's certificate
    does not chain to the trust bundle or does not name the identity discovery expects, or
    this proxy has no certificate yet. Answered 502, not retried (docs/mtls.md)."""


class UpstreamTimeout(UpstreamError):
    """The request's deadline (`timeout_ms`) expired before the response was complete."""


class UpstreamReadTimeout(UpstreamTimeout):
    """An exchange without a deadline of its own (`timeout_ms` None) heard nothing from the
    upstream for the pool's `read_timeout_ms`: no response head, or a body that stopped."""


class UpstreamConnectTimeout(UpstreamConnectError, UpstreamTimeout):
    """The TCP connect did not finish within the pool's connect timeout (nothing was sent)."""


class UpstreamProtocolError(UpstreamError):
    """The response was malformed, or the connection broke after the response had started."""


class ClientError(ProxyError):
    """The downstream client broke the request it is sending: a malformed or too slow body,
    or a disconnect. `status` is the answer the server gives when nothing was sent yet
    (400, 408); it is 499 for a disconnect, where no answer can be sent."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        """HTTP status the server answers with if the response has not started."""
        self.message = message
        """What happened, lowercase."""
        super().__init__(f"{status}: {message}")

    def __reduce__(self) -> tuple[object, tuple[int, str]]:
        return type(self), (self.status, self.message)


class XdsStreamError(ProxyError):
    """The ADS stream could not be opened or broke (`xds_client`); every grpc error becomes
    one of these, and the client reconnects after a backoff."""


class ListenError(ProxyError):
    """A listening socket could not be opened (`runner.start_proxy`): the port is in use, the
    address is not this host's, or binding it is not allowed. `mesh proxy` prints it as one
    line and exits 2."""

    def __init__(self, listener: str, host: str, port: int, reason: str) -> None:
        self.listener = listener
        """Which one: ``outbound``, ``inbound`` or ``admin`` (the flag that set it)."""
        self.host = host
        self.port = port
        self.reason = reason
        """Why, lowercase, e.g. ``address already in use``."""
        super().__init__(f"cannot listen on {host}:{port} ({listener}): {reason}")

    def __reduce__(self) -> tuple[object, tuple[str, str, int, str]]:
        return type(self), (self.listener, self.host, self.port, self.reason)


class WorkerError(ProxyError):
    """A ``--workers`` child process did not start: it exited, or did not report its admin
    port in time (`workers.Workers.start`)."""
