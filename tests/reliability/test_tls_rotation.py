"""Certificate rotation through the whole pipeline: a Secret file changes -> DirectorySource
-> AdsServer -> the Gateway proxy (over xDS) -> new handshakes get the new certificate at
once, a connection made before keeps its own and goes on serving, nothing restarts.

```
ssl client ──TLS (SNI www.example.com)──> proxy --gateway shop/public:443 ──> web-v1
write_atomic(secret.yaml) ──> InProcessPlane ──ADS──┘
```
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

from cryptography import x509

from tests.certs import Authority, secret_yaml
from tests.proxy.e2e.backends import Backend
from tests.proxy.e2e.harness import bounded, service_yaml
from tests.proxy.transport.helpers import read_response
from tests.reliability.plane import InProcessPlane, running_proxy, until, write_atomic

GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: turnout}
spec: {controllerName: turnout.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: public, namespace: shop}
spec:
  gatewayClassName: turnout
  listeners:
  - name: www
    protocol: HTTPS
    port: 443
    hostname: www.example.com
    tls: {mode: Terminate, certificateRefs: [{name: www-cert}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: www, namespace: shop}
spec:
  parentRefs: [{name: public}]
  rules:
  - backendRefs: [{name: web-v1, port: 80}]
"""

REQUEST = b"GET /echo HTTP/1.1\r\nHost: www.example.com\r\n\r\n"


def serial(writer: asyncio.StreamWriter) -> int:
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number


@bounded(60)
async def test_a_renewed_secret_reaches_new_handshakes_without_a_restart(tmp_path: Path) -> None:
    ca = Authority()
    first, renewed = ca.leaf("www.example.com"), ca.leaf("www.example.com")
    backend = await Backend("v1").start()
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "app.yaml").write_text("\n---\n".join([service_yaml("web-v1", [backend]), GATEWAY]))
    secret = routes / "secret.yaml"
    secret.write_text(secret_yaml("shop", "www-cert", first))
    plane = await InProcessPlane(routes).start()
    ctx = ssl.create_default_context(cadata=ca.ca_pem.decode())
    try:
        async with running_proxy(plane.port, gateway="shop/public:443") as proxy:
            port = proxy.port_of(proxy.servers[0])
            await until(lambda: proxy.tls_on, timeout_s=10, what="TLS on the gateway port")
            reader, old = await asyncio.open_connection(
                "127.0.0.1", port, ssl=ctx, server_hostname="www.example.com"
            )
            try:
                assert serial(old) == first.serial
                old.write(REQUEST)
                assert (await read_response(reader))[0] == 200
                version = proxy.version
                write_atomic(secret, secret_yaml("shop", "www-cert", renewed))
                await until(lambda: proxy.version != version, timeout_s=10, what="the new table")
                _, new = await asyncio.open_connection(
                    "127.0.0.1", port, ssl=ctx, server_hostname="www.example.com"
                )
                assert serial(new) == renewed.serial
                new.close()
                # the connection made before: same certificate, still served
                assert serial(old) == first.serial
                old.write(REQUEST)
                assert (await read_response(reader))[0] == 200
            finally:
                old.close()
                with contextlib.suppress(OSError, ssl.SSLError):
                    await old.wait_closed()
    finally:
        await plane.stop()
        await backend.stop()
