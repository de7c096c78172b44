"""Istio's PeerAuthentication precedence as the engine resolves it (`peer_mode`), checked
against the proxy's own resolution from the served resources, and the endpoints of a
DISABLE port served without their identity."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import json_format
from xds.type.v3.typed_struct_pb2 import TypedStruct

from tests.conftest import GOLDEN
from turnout.engine.authorization import peer_mode
from turnout.engine.pipeline import compile_files, compile_policy_files
from turnout.engine.xds.policy import policy_resources
from turnout.proxy.inbound_policy import PolicyResources, Workload

CASE = GOLDEN / "policy" / "istio-peer-request-authn.in.yaml"


@pytest.mark.parametrize(
    ("ns", "labels", "port", "mode"),
    [
        pytest.param("shop", {}, 8080, "STRICT", id="mesh-wide-strict"),
        pytest.param("legacy", {}, 8080, "PERMISSIVE", id="namespace-beats-mesh"),
        pytest.param("legacy", {"app": "db"}, 5432, "DISABLE", id="port-level-beats-all"),
        pytest.param("legacy", {"app": "db"}, 443, "STRICT", id="port-level-strict"),
        pytest.param("legacy", {"app": "db"}, 9090, "PERMISSIVE", id="unset-port-inherits"),
        pytest.param("legacy", {"app": "db"}, 80, "PERMISSIVE", id="unset-workload-inherits"),
    ],
)
def test_peer_mode_precedence_in_engine_and_proxy(
    ns: str, labels: dict[str, str], port: int, mode: str
) -> None:
    _, result = compile_policy_files([CASE])
    assert peer_mode(result.table, ns, labels, port) == mode
    wire = policy_resources(result.table)
    served = PolicyResources.of(
        {name: (ts.type_url, _plain(ts)) for name, ts in wire.by_name().items()}
    )
    assert served.resolve(Workload(namespace=ns, labels=labels), port).mode == mode


def _plain(ts: TypedStruct) -> dict[str, object]:
    return json_format.MessageToDict(ts.value)


def test_endpoints_of_a_disable_port_lose_their_identity(tmp_path: Path) -> None:
    f = tmp_path / "m.yaml"
    f.write_text(
        """
apiVersion: v1
kind: Service
metadata: {name: db, namespace: legacy}
spec:
  selector: {app: db}
  ports: [{name: sql, port: 5432}, {name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-1
  namespace: legacy
  labels: {kubernetes.io/service-name: db}
  annotations: {identity.turnout.dev/name: db.legacy.serviceaccount.identity.cluster.local}
addressType: IPv4
ports: [{name: sql, port: 5432}, {name: http, port: 8080}]
endpoints: [{addresses: [10.0.0.5]}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: db, namespace: legacy}
spec:
  selector: {matchLabels: {app: db}}
  portLevelMtls:
    "5432": {mode: DISABLE}
"""
    )
    table = compile_files([f]).result.table
    ids = {c.name: [e.identity for e in c.endpoints] for c in table.clusters}
    assert ids["legacy/db:5432"] == [None]
    assert ids["legacy/db:80"] == ["db.legacy.serviceaccount.identity.cluster.local"]
