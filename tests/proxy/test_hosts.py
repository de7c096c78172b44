"""`listener_for_host` and Host parsing."""

from __future__ import annotations

import pytest

from turnout.proxy import listener_for_host
from turnout.proxy.hosts import split_port

FULL = "web.shop.svc.cluster.local"


@pytest.mark.parametrize(
    ("host", "want"),
    [
        pytest.param("web", f"{FULL}:80", id="bare-name-uses-client-namespace"),
        pytest.param("web:8080", f"{FULL}:8080", id="bare-name-with-port"),
        pytest.param("web.shop", f"{FULL}:80", id="name-ns"),
        pytest.param("web.shop.svc:9090", f"{FULL}:9090", id="name-ns-svc"),
        pytest.param("WEB.shop.svc.cluster.local:80", f"{FULL}:80", id="fqdn-case-insensitive"),
        pytest.param("web.shop.svc.cluster.local.", f"{FULL}:80", id="fqdn-trailing-dot"),
        pytest.param("api.example.com", None, id="not-a-service-name"),
        pytest.param("a.b.svc.other", None, id="wrong-cluster-domain"),
    ],
)
def test_listener_for_host(host: str, want: str | None) -> None:
    assert listener_for_host(host, namespace="shop") == want


def test_listener_for_host_default_port() -> None:
    assert listener_for_host("web.shop", namespace="x", default_port=8080) == f"{FULL}:8080"


@pytest.mark.parametrize(
    ("authority", "want"),
    [
        ("a:1", ("a", 1)),
        ("a", ("a", None)),
        ("[::1]:80", ("[::1]", 80)),
        ("[::1]", ("[::1]", None)),
        ("a:x", ("a:x", None)),
    ],
)
def test_split_port(authority: str, want: tuple[str, int | None]) -> None:
    assert split_port(authority) == want
