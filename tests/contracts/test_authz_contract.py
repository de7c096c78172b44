"""The proxy's authorization (`proxy.authz`, `proxy.inbound_policy`) answers as the engine's
`decide` does, over the golden policy corpus as the control plane serves it (the xDS
resources' JSON, numbers as doubles): every workload a Server or policy selects, every port,
identities the policies name plus strangers, plaintext and TLS without identity, three
networks, connection-level and HTTP checks; the workloads have container port names for
every named Server port and kubelet probes (`/ready` on each port), so named ports and
Linkerd's default probe route are swept too."""

from __future__ import annotations

import itertools
from functools import cache
from typing import Any

import pytest

from tests.conftest import GOLDEN
from turnout.engine.authorization import Client, Request, Workload, decide
from turnout.engine.ir_policy import PolicyTable
from turnout.engine.pipeline import compile_policy_files
from turnout.engine.xds.policy import policy_resources
from turnout.proxy.authz import Caller, Req
from turnout.proxy.inbound_policy import PolicyResources
from turnout.proxy.inbound_policy import Workload as ProxyWorkload

PROBE_PATH = "/ready"
CASES = sorted(p.name.removesuffix(".in.yaml") for p in (GOLDEN / "policy").glob("*.in.yaml"))


@cache
def compiled(case: str) -> tuple[PolicyTable, PolicyResources]:
    _, result = compile_policy_files([GOLDEN / "policy" / f"{case}.in.yaml"])
    wire = policy_resources(result.table).to_dict()
    served: dict[str, tuple[str, Any]] = {}
    items = [*wire["servers"], *wire["workload_policies"], wire["defaults"]]  # type: ignore[misc]
    items += [*wire.get("peer_authentications", []), *wire.get("request_authentications", [])]  # type: ignore[misc]
    for item in items:
        served[item["name"]] = (item["type_url"], item["value"])
    return result.table, PolicyResources.of(served)


def workloads(table: PolicyTable) -> list[tuple[str, dict[str, str]]]:
    out = [("default", {}), ("other", {"app": "none"})]
    for s in table.servers:
        out.append((s.namespace, dict(s.selector.labels)))
    for p in table.workload_policies:
        ns = p.namespace or "default"
        out.append((ns, dict(p.selector.labels) if p.selector else {}))
    return out


def port_names(table: PolicyTable) -> dict[str, int]:
    """A number for each named Server port (what the pod's `--port-name` flags say)."""
    named = sorted({s.port for s in table.servers if isinstance(s.port, str)})
    return {name: 9100 + i for i, name in enumerate(named)}


def ports(table: PolicyTable) -> list[int]:
    found = {s.port for s in table.servers if isinstance(s.port, int)}
    found.update(port_names(table).values())
    for p in table.workload_policies:
        for a in p.authorizations:
            for op in a.operations:
                found.update(op.ports)
    return sorted(found | {8080})


def identities(table: PolicyTable) -> list[str | None]:
    names: set[str] = {
        "stranger.elsewhere.serviceaccount.identity.cluster.local",
        "default.istio-system.serviceaccount.identity.cluster.local",
    }
    for s in table.servers:
        names.add(f"web.{s.namespace}.serviceaccount.identity.cluster.local")
    text = repr(table)
    for ns in ("emojivoto", "ingress-nginx", "shop", "bookinfo", "istio-system", "booksapp"):
        names.add(f"webapp.{ns}.serviceaccount.identity.cluster.local")
        for sa in (
            "ingress-nginx",
            "web",
            "vote-bot",
            "istio-ingressgateway-service-account",
            "bookinfo-productpage",
            "default",
            "emoji",
        ):
            if ns in text and sa in text:
                names.add(f"{sa}.{ns}.serviceaccount.identity.cluster.local")
    return [None, "", *sorted(names)]


REQUESTS = [
    Request(method="GET", path="/", host="web"),
    Request(method="POST", path="/admin/x", host="web", headers=(("x-env", "prod-1"),)),
    Request(
        method="GET", path="/productpage", host="productpage:9080", headers=(("x-env", "prod-1"),)
    ),
    Request(method="DELETE", path="/api/vote", host="web"),
    Request(method="POST", path="/books/7", host="books:7002"),
    Request(method="GET", path="/books", host="books:7002"),
    Request(method="GET", path=PROBE_PATH, host="10.1.2.3:8080"),
    Request(method="POST", path=PROBE_PATH, host="10.1.2.3:8080"),
]


@pytest.mark.parametrize("case", CASES)
def test_proxy_decides_as_the_engine(case: str) -> None:
    table, served = compiled(case)
    checked = 0
    outcomes: set[bool] = set()
    kinds: set[str] = set()
    named_servers = {s.name.split("/")[-1] for s in table.servers if isinstance(s.port, str)}
    names, all_ports = port_names(table), ports(table)
    probes = tuple((p, PROBE_PATH) for p in all_ports)
    for (ns, labels), port in itertools.product(workloads(table), all_ports):
        proxy_workload = ProxyWorkload(
            namespace=ns,
            labels=labels,
            port_names=names,
            probes={p: frozenset({path}) for p, path in probes},
        )
        policy = served.resolve(proxy_workload, port)
        for identity, ip in itertools.product(identities(table), ("10.1.2.3", "192.0.2.7")):
            tls = identity is not None
            caller = Caller.of(ip, tls=tls, identity=identity)
            client = Client(identity=identity or None, ip=ip, tls=tls)
            work = Workload(
                namespace=ns,
                labels=tuple(labels.items()),
                port_names=tuple(names.items()),
                probes=probes,
            )
            for request in (None, *REQUESTS):
                if request is None:
                    if policy.routes:
                        continue  # an HTTP server's connections are checked per request
                    route = None
                    want = decide(table, workload=work, port=port, client=client)
                    got = policy.check(caller, None, None)
                else:
                    req = Req(
                        method=request.method,
                        path=request.path,
                        host=request.host,
                        headers=dict(request.headers),
                    )
                    found = policy.route_for(request) if policy.routes else None
                    if policy.routes and found is None:
                        continue  # 404 before authorization (Linkerd's order)
                    route = None if found is None else f"{found.kind}/{ns}/{found.name}"
                    want = decide(
                        table, workload=work, port=port, client=client, route=route, request=request
                    )
                    got = policy.check(caller, req, found)
                where = f"{case}: {ns} {labels} :{port} {identity} {ip} {request} {route}"
                assert (got.allowed, got.decided_by) == (want.allowed, want.decided_by), where
                checked += 1
                if got.decided_by == "default/probe":
                    kinds.add("probe")
                if policy.server_name.split("/")[-1] in named_servers:
                    kinds.add("named")
                outcomes.add(got.allowed)
    assert checked > 50
    seen = kinds
    if any(isinstance(s.port, str) for s in table.servers):
        assert "named" in seen, "a named Server port must select a workload's port"
    assert "probe" in seen or all(s.routes or s.opaque for s in table.servers)
    if table.servers or table.workload_policies:
        assert outcomes == {True, False}, "the sweep must see both answers"
