"""Server-first ports that are not marked opaque: a `ServerFirstPortDetected` warning.

```
Service port (TCP) in SERVER_FIRST_PORTS (Linkerd's default opaque ports: MySQL, Redis, ...)
  opaque when  the Service's or its Namespace's `config.linkerd.io/opaque-ports` lists it
               (its port, its numeric targetPort or its name; ranges ``4000-4100``), or a
               Server whose podSelector the Service's selector satisfies selects its target
               port with `proxyProtocol: opaque` (or `TLS`)
  otherwise    warning at spec.ports[i].port: the client's first bytes never come, so
               protocol detection waits its full timeout
```

Pure; what `mesh validate` prints through `compile_policy`'s diagnostics.
"""

from __future__ import annotations

from turnout.engine.config import OPAQUE_PORTS_ANNOTATION, SERVER_FIRST_PORTS
from turnout.engine.diagnostics import Diagnostic, warning
from turnout.engine.model import Loaded, Namespace, Resources, Service
from turnout.engine.model.authz import ServerV1beta1
from turnout.engine.model.core import ServicePort
from turnout.engine.opaque_ports import listed as _listed

DETECT_TIMEOUT_S = 10
"""Linkerd's protocol detection timeout (what a client of an unmarked server-first port waits)."""


def _server_opaque(svc: Service, port: ServicePort, servers: list[ServerV1beta1]) -> bool:
    target = port.target_port if port.target_port is not None else port.port
    for srv in servers:
        sel = srv.spec.pod_selector
        if srv.namespace != svc.namespace or sel is None or not svc.spec.selector:
            continue
        if any(svc.spec.selector.get(k) != v for k, v in sel.match_labels.items()):
            continue
        if sel.match_expressions or srv.spec.proxy_protocol not in ("opaque", "TLS"):
            continue
        if srv.spec.port == target:
            return True
    return False


def server_first_warnings(resources: Resources, diags: list[Diagnostic]) -> None:
    ns_ports = {
        o.obj.name: o.obj.metadata.annotations.get(OPAQUE_PORTS_ANNOTATION)
        for o in resources.of(Namespace)
    }
    servers = [o.obj for o in resources.of(ServerV1beta1)]
    loaded = sorted(resources.of(Service), key=lambda o: (o.obj.namespace, o.obj.name))
    for o in loaded:
        _check(o, ns_ports.get(o.obj.namespace), servers, diags)


def _check(
    o: Loaded[Service], ns_text: str | None, servers: list[ServerV1beta1], diags: list[Diagnostic]
) -> None:
    svc = o.obj
    own = svc.metadata.annotations.get(OPAQUE_PORTS_ANNOTATION)
    for i, port in enumerate(svc.spec.ports):
        what = SERVER_FIRST_PORTS.get(port.port)
        if what is None or port.protocol != "TCP":
            continue
        if _listed(port, own) or _listed(port, ns_text) or _server_opaque(svc, port, servers):
            continue
        msg = (
            f"port {port.port} is a server-first protocol's port ({what}); mark it opaque "
            f"({OPAQUE_PORTS_ANNOTATION}) or clients wait {DETECT_TIMEOUT_S} s for protocol detection"
        )
        diags.append(warning("ServerFirstPortDetected", msg, o.field(f"spec.ports[{i}].port")))
