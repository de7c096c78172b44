"""`mesh routes explain --from-identity/--from-ip`: would the destination authorize the call?

```
Via(Service ns/name:port) --the Service's selector and targetPort--> Workload, port
   compile_policy(resources) -> PolicyTable --decide--> Decision (allowed, decided_by, reason)
```

Offline only (`-f`): it needs the Services and the policy objects. A Pod of the files that
the Service selects gives the workload's named container ports (a named `targetPort`, a
Server's `port: http`) and its HTTP probe paths. The inbound route is not
matched yet, so Linkerd's route-level authorizations are not consulted (the server-level
ones are, and Istio's rules see the request's method, path, host and headers).
"""

from __future__ import annotations

from turnout.cli.offline import Request, Via
from turnout.engine.model import Pod, Resources, Service


def authorization_data(
    via: Via,
    request: Request,
    resources: Resources,
    *,
    identity: str | None,
    ip: str,
) -> dict[str, object]:
    """The decision as plain data (``skipped`` with why, when there is nothing to decide)."""
    from turnout.adapters.policy import compile_policy
    from turnout.engine import authorization as authz

    if via.kind != "Service":
        return {"skipped": "authorization is decided at a Service's workloads, not a Gateway"}
    svc = next(
        (
            s.obj
            for s in resources.of(Service)
            if s.obj.namespace == via.namespace and s.obj.name == via.name
        ),
        None,
    )
    if svc is None or not svc.spec.selector:
        return {"skipped": f"Service {via.namespace}/{via.name} selects no workload"}
    selector = svc.spec.selector
    pod = next(
        (
            p.obj
            for p in resources.of(Pod)
            if p.obj.namespace == via.namespace
            and all(p.obj.metadata.labels.get(k) == v for k, v in selector.items())
        ),
        None,
    )
    port_names = pod.port_names() if pod is not None else ()
    port = next((p for p in svc.spec.ports if p.port == via.port), None)
    target = port.target_port if port is not None else None
    if isinstance(target, str):
        target = dict(port_names).get(target)
    workload_port = target if isinstance(target, int) else via.port
    info, _ = request.info()
    table = compile_policy(resources).table
    labels = tuple(sorted(selector.items()))
    mode = authz.peer_mode(table, via.namespace, dict(labels), workload_port)
    if mode == "STRICT" and identity is None:
        return {
            "allowed": False,
            "server": f"{via.namespace}/{via.name}",
            "port": workload_port,
            "mtls": mode,
            "reason": "mTLS STRICT: a plaintext connection is refused before any request",
        }
    decision = authz.decide(
        table,
        workload=authz.Workload(
            namespace=via.namespace,
            labels=labels,
            port_names=port_names,
            probes=pod.probes() if pod is not None else (),
        ),
        port=workload_port,
        client=authz.Client(identity=identity, ip=ip, tls=identity is not None),
        request=authz.Request(
            method=info.method,
            path=info.path,
            host=info.authority,
            headers=tuple((k.lower(), v) for k, v in request.headers),
        ),
    )
    out: dict[str, object] = {
        "allowed": decision.allowed,
        "server": decision.server,
        "port": workload_port,
        "mtls": mode,
        "reason": decision.reason,
    }
    if decision.decided_by:
        out["decided_by"] = decision.decided_by
    if decision.audited:
        out["audited"] = list(decision.audited)
    return out


def authorization_text(data: dict[str, object]) -> str:
    if "skipped" in data:
        return f"authorization: not decided ({data['skipped']})\n"
    verdict = "allowed" if data["allowed"] else "DENIED"
    mtls = f", mTLS {data['mtls']}" if "mtls" in data else ""
    return (
        f"authorization: {verdict} at {data['server']} (port {data['port']}{mtls}):"
        f" {data['reason']}\n"
    )
