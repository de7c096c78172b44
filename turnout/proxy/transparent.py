"""`mesh proxy --transparent`: the listeners of a pod whose TCP iptables redirects to them.

```
app ─ connect(10.96.0.10:80) ─ nat OUTPUT REDIRECT ─► outbound 127.0.0.1:4140
   accept ─ original_dst(sock) once ─► outbound_place, by the table's TcpTarget:
      a Service address or an endpoint of the table
          opaque (turnout.opaque, --opaque-ports) ─► TCP at once to an endpoint the
              balancer chooses (BalancedUpstream; nothing read: server-first works)
          else peek the first bytes (detect.first_bytes, up to the detect timeout)
              HTTP/1 request line ─► HTTP; every request's destination is that address
                  (`destinations.py`: the Service's routes, Host choosing only among
                  them; an endpoint: passed through untouched)
              h2 preface, TLS record, other, silence ─► TCP to a balanced endpoint
      not redirected (a client of 127.0.0.1:4140 itself) ─► HTTP by Host, as without it
      unknown ─► the bytes forwarded to the original destination (`--refuse-unknown`: reset)
client ─ connect(pod:8080) ─ nat PREROUTING REDIRECT ─► inbound 0.0.0.0:4143
   accept ─ original_dst ─► inbound_place: app 127.0.0.1:8080 with port 8080's guard
      (policy, TLS detection, opaque ports and metrics as `--app` has them); not
      redirected: `--app`, if given; the proxy's own ports: refused (no loop)
```

Both listeners are `serve_detecting` servers (an accept loop that can look at a socket
before any protocol runs); outbound never terminates TLS. Nothing here runs per request:
the original destination is read and placed at accept and kept on the connection
(`ConnectionInfo`). Forwarded TCP is plaintext, even to a meshed endpoint (no opaque mTLS
transport yet; `--require-mtls` resets it instead; docs/capture.md).
Not here: the rules themselves (`mesh proxy-init`, `turnout.cluster.capture`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from turnout.proxy.balancer import Balancer, Slot
from turnout.proxy.destinations import TcpTarget
from turnout.proxy.handler import LOCAL_APP_HOST, Handler
from turnout.proxy.inbound_guard import InboundGuard
from turnout.proxy.metrics import ProxyMetrics
from turnout.proxy.outbound_tls import server_tls
from turnout.proxy.process import Address, ListenerName, ProxyConfig
from turnout.proxy.transport.detect import (
    DETECT_TIMEOUT_MS,
    DetectingServer,
    Place,
    Placement,
    serve_detecting,
)
from turnout.proxy.transport.downstream import Http2Takeover
from turnout.proxy.transport.h2_server import take_over
from turnout.proxy.transport.mesh_tcp import ForwardTo
from turnout.proxy.transport.messages import ConnectionHooks, MeshTls

log = logging.getLogger(__name__)

NOT_REDIRECTED = Placement(None)


def new_guard(
    config: ProxyConfig, metrics: ProxyMetrics, port: int, *, host: str = LOCAL_APP_HOST
) -> InboundGuard:
    """The inbound guard of the app at `host`:`port` (``--app``'s, or one per port here)."""
    return InboundGuard(
        base=dict(metrics.workload_pairs),
        target=(host, port),
        identity=config.identity is not None,
        families=metrics.authz,
        opaque=any(lo <= port <= hi for lo, hi in config.opaque_ports),
    )


class BalancedUpstream:
    """One forwarded connection's endpoint, chosen by the balancer of its `TcpTarget`'s
    cluster (pending while connecting, the connect time as its latency): over mesh TLS to
    the endpoint's identity when it has one and the proxy has one (`mesh`), with the
    client context the HTTP path uses; else plaintext (``--require-mtls``: refused)."""

    __slots__ = ("_balancer", "_mesh", "_slot", "destination", "require_mtls")

    def __init__(
        self,
        target: TcpTarget,
        balancer: Balancer | None,
        *,
        require_mtls: bool,
        mesh: MeshTls | None = None,
    ):
        self._balancer = balancer
        self._mesh = mesh
        self._slot: Slot | None = None
        self.destination = (target.namespace, target.service)
        self.require_mtls = require_mtls

    def acquire(self) -> ForwardTo | None:
        if self._balancer is None:
            return None
        slot = self._slot = self._balancer.acquire()
        if slot is None:
            return None
        ep = slot.endpoint
        status = server_tls(self._mesh is not None, ep.identity)
        if ep.identity is not None and self._mesh is not None:
            ctx = self._mesh.client_context
            if ctx is not None:
                return ForwardTo((ep.address, ep.port), ctx, ep.identity, status)
            log.debug("tcp forward refused: no identity certificate yet")
        elif not self.require_mtls:
            return ForwardTo((ep.address, ep.port), status=status)
        else:
            log.debug("tcp forward refused: --require-mtls and the endpoint is not meshed")
        self._balancer.release(slot, 0.0, failed=False)
        self._slot = None
        return None

    def release(self, connect_ms: float, *, failed: bool) -> None:
        if self._balancer is not None and self._slot is not None:
            self._balancer.release(self._slot, connect_ms, failed=failed)


def outbound_place(
    handler: Handler,
    *,
    refuse_unknown: bool,
    opaque_ports: tuple[tuple[int, int], ...] = (),
    require_mtls: bool = False,
    mesh: MeshTls | None = None,
) -> Place:
    """A known destination: forwarded at once when opaque (its Service's mark, or
    `opaque_ports`), else detected (HTTP/1: HTTP; anything else: forwarded to one of its
    endpoints, over mesh TLS to a meshed one when `mesh` is the proxy's identity). An
    unknown one: forwarded untouched (or refused)."""

    def place(dst: tuple[str, int] | None) -> Placement | None:
        if dst is None:
            return NOT_REDIRECTED
        state = handler.state
        target = state.table.destinations.tcp.get(dst)
        if target is not None:
            upstream = BalancedUpstream(
                target,
                state.balancers.get(target.cluster),
                require_mtls=require_mtls,
                mesh=mesh,
            )
            opaque = target.opaque or any(lo <= dst[1] <= hi for lo, hi in opaque_ports)
            return Placement(dst, upstream=upstream, detect=not opaque)
        if state.table.destinations.lookup(dst) is not None:
            return Placement(dst)
        if refuse_unknown:
            return None
        log.debug("unknown destination forwarded address=%s:%d", *dst)
        return Placement(dst, forward=dst)

    return place


def inbound_place(config: ProxyConfig, guard_for: Callable[[int], InboundGuard]) -> Place:
    """127.0.0.1 at the original port, with that port's guard (see the module docstring)."""
    own = {a.port for a in (config.inbound, config.outbound, config.admin) if a is not None}

    def place(dst: tuple[str, int] | None) -> Placement | None:
        if dst is not None:
            if dst[1] in own:
                return None  # a client reaching the proxy's own ports through capture
            app = (LOCAL_APP_HOST, dst[1])
        elif config.app is not None:
            app = (config.app.host, config.app.port)
        else:
            return None
        return Placement(dst, gate=guard_for(app[1]), app=app)

    return place


async def serve_transparent(
    name: ListenerName,
    addr: Address,
    handler: Handler,
    *,
    config: ProxyConfig,
    guard_for: Callable[[int], InboundGuard],
    hooks: ConnectionHooks,
    mesh: MeshTls | None,
    http2: Http2Takeover = take_over,
) -> DetectingServer:
    """The outbound or inbound listener of a transparent proxy (`http2`: who serves the
    HTTP/2 preface)."""
    if name == "outbound":
        place = outbound_place(
            handler,
            refuse_unknown=config.refuse_unknown,
            opaque_ports=config.opaque_ports,
            require_mtls=config.require_mtls,
            mesh=mesh,  # mesh TLS originated to meshed endpoints
        )
        mesh = None  # the app's own TLS is the app's: never terminated outbound
    else:
        place = inbound_place(config, guard_for)
    return await serve_detecting(
        handler,
        host=addr.host,
        port=addr.port,
        mesh=mesh,
        reuse_port=config.workers > 1,
        detect_timeout_ms=(
            config.identity.detect_timeout_ms if config.identity is not None else DETECT_TIMEOUT_MS
        ),
        hooks=hooks,
        place=place,
        http2=http2,  # the preface: served as HTTP/2 (routes, gRPC), not forwarded as TCP
    )
