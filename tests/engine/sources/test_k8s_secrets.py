"""The Kubernetes source reads only `kubernetes.io/tls` Secrets (a `type` field selector on
every list and watch, so other Secrets never leave the API server), and a certificate
rotated in its Secret reaches the compiled listener without a restart."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.certs import Authority, Leaf
from tests.engine.sources.k8s_fake import FakeApiServer
from tests.engine.sources.test_k8s import OURS, SERVED, running
from turnout.engine import ir
from turnout.engine.compile import compile_table
from turnout.engine.model import Resources, Secret

GW = "gateway.networking.k8s.io/v1"


def tls_secret(name: str, leaf: Leaf, *, type_: str = "kubernetes.io/tls") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "edge"},
        "type": type_,
        "data": {
            "tls.crt": base64.b64encode(leaf.chain_pem).decode(),
            "tls.key": base64.b64encode(leaf.key_pem).decode(),
        },
    }


def gateway() -> list[dict[str, Any]]:
    listener = {
        "name": "https",
        "port": 443,
        "protocol": "HTTPS",
        "tls": {"certificateRefs": [{"name": "edge-tls"}]},
    }
    return [
        {
            "apiVersion": GW,
            "kind": "GatewayClass",
            "metadata": {"name": "turnout"},
            "spec": {"controllerName": OURS},
        },
        {
            "apiVersion": GW,
            "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "edge"},
            "spec": {"gatewayClassName": "turnout", "listeners": [listener]},
        },
    ]


def served_chain(resources: Resources) -> str | None:
    (parent,) = [p for p in compile_table(resources).table.parents if p.name.startswith("gateway/")]
    assert isinstance(parent, ir.GatewayParent)
    (li,) = parent.listeners
    assert li.tls is not None
    return li.tls.certificates[0].chain_pem if li.tls.certificates else None


@pytest.fixture
async def fake() -> AsyncIterator[FakeApiServer]:
    async with FakeApiServer(SERVED.values()) as api:
        yield api


async def test_only_tls_secrets_are_listed_and_watched(fake: FakeApiServer) -> None:
    leaf = Authority().leaf("edge.example.com")
    for obj in (
        *gateway(),
        tls_secret("edge-tls", leaf),
        tls_secret("db-password", leaf, type_="Opaque"),
    ):
        fake.apply(obj)
    async with running(fake) as (_, snaps):
        resources, _ = await snaps.next()
    assert [s.obj.name for s in resources.of(Secret)] == ["edge-tls"]
    secret_requests = [q for m, p, q in fake.requests if p.endswith("/secrets")]
    assert secret_requests and all(
        q.get("fieldSelector") == "type=kubernetes.io/tls" for q in secret_requests
    )
    assert served_chain(resources) == leaf.chain_pem.decode()


async def test_a_rotated_certificate_reaches_the_listener(fake: FakeApiServer) -> None:
    ca = Authority()
    old, new = ca.leaf("edge.example.com"), ca.leaf("edge.example.com")
    for obj in (*gateway(), tls_secret("edge-tls", old)):
        fake.apply(obj)
    async with running(fake) as (_, snaps):
        first, _ = await snaps.next()
        assert served_chain(first) == old.chain_pem.decode()
        fake.apply(tls_secret("edge-tls", new))
        second, _ = await snaps.next(lambda r: served_chain(r) != old.chain_pem.decode())
    assert served_chain(second) == new.chain_pem.decode()
