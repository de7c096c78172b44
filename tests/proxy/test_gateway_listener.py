"""`mesh proxy --xds ... --gateway NS/NAME[:PORT]`: a table without that Gateway's listener
is said once (every request would answer 404 unknown destination), not at every table, and
its coming back is said too. With `-f` the CLI refuses such a Gateway before starting."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.certs import Authority, secret_yaml
from turnout.cli.offline import offline_runtime
from turnout.proxy.process import ProxyConfig, parse_gateway
from turnout.proxy.runner import build_proxy

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "emojivoto"


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


async def test_a_missing_gateway_listener_is_said_once_and_its_return_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with_gateway, _ = offline_runtime([str(EXAMPLES)], namespace="emojivoto")
    without, _ = offline_runtime([str(EXAMPLES / "mesh")], namespace="emojivoto")
    proxy = build_proxy(
        ProxyConfig(namespace="emojivoto", gateway=parse_gateway("emojivoto/public"))
    )
    caplog.set_level(logging.INFO, logger="turnout.proxy.runner")

    proxy.apply(without, "1")
    proxy.apply(without, "2")
    assert warnings_of(caplog) == [
        "gateway listener not in the table gateway=emojivoto/public:80 gateways=none"
    ]

    proxy.apply(with_gateway, "3")
    assert "gateway listener in the table gateway=emojivoto/public:80" in caplog.messages
    proxy.apply(without, "4")
    assert len(warnings_of(caplog)) == 2


async def test_a_mesh_proxy_says_nothing_of_gateways(caplog: pytest.LogCaptureFixture) -> None:
    without, _ = offline_runtime([str(EXAMPLES / "mesh")], namespace="emojivoto")
    proxy = build_proxy(ProxyConfig(namespace="emojivoto"))
    proxy.apply(without, "1")
    assert warnings_of(caplog) == []


def test_https_listeners_sharing_a_port_load_as_one_gateway_listener(tmp_path: Path) -> None:
    """One TLS filter chain per HTTPS listener (SNI), all with the same connection manager:
    the proxy takes the table (it used to refuse a listener with more than one chain)."""
    ca = Authority()
    listeners = "\n".join(
        f"  - {{name: {name}, port: 443, protocol: HTTPS, hostname: '{host}',"
        f" tls: {{certificateRefs: [{{name: {name}-tls}}]}}}}"
        for name, host in (("foo", "foo.example.com"), ("wild", "*.example.com"))
    )
    docs = [
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\n"
        "metadata: {name: turnout}\nspec: {controllerName: turnout.dev/gateway-controller}\n",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n"
        f"metadata: {{name: gw, namespace: edge}}\nspec:\n  gatewayClassName: turnout\n"
        f"  listeners:\n{listeners}\n",
        secret_yaml("edge", "foo-tls", ca.leaf("foo.example.com")),
        secret_yaml("edge", "wild-tls", ca.leaf("*.example.com")),
    ]
    (tmp_path / "gw.yaml").write_text("---\n".join(docs))
    runtime, _ = offline_runtime([str(tmp_path)], namespace="edge")
    assert "gateway/edge/gw:443" in runtime.listeners
