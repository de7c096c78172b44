"""HTTP/2 clients through the real proxy to HTTP/1.1 apps (docs/http2.md): h2c prior
knowledge on the same ports as HTTP/1.1, routes and filters applied per stream, bodies
translated (`:authority` -> Host, a body without length -> chunked), the proxy's own answers
as HTTP/2 (trailers-only with grpc-status on a gRPC stream)."""

from __future__ import annotations

import asyncio
import json
import sys

from tests.proxy.e2e.backends import _pattern
from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import bounded, metric
from tests.proxy.e2e.manifests import SMOKE_ROUTE
from tests.support.h2client import H2Client

GRPC = [(b"content-type", b"application/grpc"), (b"te", b"trailers")]


@bounded(15)
async def test_an_h2_client_is_routed_to_http1_backends_stream_by_stream(lab: Lab) -> None:
    v1, v2 = await lab.backend("v1"), await lab.backend("v2")
    mesh = await lab.mesh({"web": [], "web-v1": [v1], "web-v2": [v2]}, SMOKE_ROUTE)
    client = await H2Client.open(("127.0.0.1", mesh.outbound))
    try:
        resp = await client.request("GET", "/v2/echo?x=1", authority="web.shop")
        assert resp.status == 200 and resp.header(b"x-backend") == b"v2"
        echo = json.loads(resp.body)
        assert echo["host"] == "web.shop" and echo["query"] == "x=1"
        assert echo["headers"]["x-route"] == "v2"  # the route's filter ran
        body = _pattern(300_000)  # no content-length: chunked to the HTTP/1.1 backend
        resp = await client.request("POST", "/echo", authority="web", body=body)
        echo = json.loads(resp.body)
        assert resp.status == 200 and echo["body"].encode("latin-1") == body
        assert echo["headers"].get("transfer-encoding") == "chunked"
        many = await asyncio.gather(
            *(client.request("GET", f"/big/{70_000 + i}", authority="web") for i in range(20))
        )
        assert [len(r.body) for r in many] == [70_000 + i for i in range(20)]
        assert all(bytes(r.body) == _pattern(len(r.body)) for r in many)
        chunked = await client.request("GET", "/chunked/200000", authority="web")
        assert bytes(chunked.body) == _pattern(200_000)
    finally:
        await client.close()
    status, _, _ = await mesh.get("web", "/echo")  # HTTP/1.1 on the same port, as before
    assert status == 200
    text = await mesh.metrics()
    assert metric(text, "response_total", direction="outbound", status_code="200") >= 24


@bounded(15)
async def test_the_proxy_answers_in_http2_and_grpc_streams_get_trailers_only(lab: Lab) -> None:
    mesh = await lab.mesh({"web": [], "web-v1": []}, SMOKE_ROUTE)
    client = await H2Client.open(("127.0.0.1", mesh.outbound))
    try:
        plain = await client.request("GET", "/", authority="nope.elsewhere")
        assert plain.status == 404 and plain.header(b"l5d-proxy-error") == b"unknown destination"
        grpc = await client.request("POST", "/pkg.Svc/Get", authority="web", headers=GRPC)
        # no ready endpoints (503): UNAVAILABLE, in the HEADERS that end the stream
        assert grpc.status == 200 and not grpc.body and not grpc.trailers
        assert grpc.header(b"grpc-status") == b"14"
        assert grpc.header(b"grpc-message") == b"no ready endpoints"
    finally:
        await client.close()


@bounded(15)
async def test_inbound_serves_h2_clients_in_front_of_an_http1_app(lab: Lab) -> None:
    app = await lab.backend("app")
    mesh = await lab.mesh({"web": [app]}, SMOKE_ROUTE, inbound_app=("127.0.0.1", app.port))
    assert mesh.inbound is not None
    client = await H2Client.open(("127.0.0.1", mesh.inbound))
    try:
        resp = await client.request("PUT", "/echo", authority="app.shop:80", body=b"x" * 5000)
        echo = json.loads(resp.body)
        assert resp.status == 200 and echo["method"] == "PUT" and len(echo["body"]) == 5000
        assert echo["host"] == "app.shop:80"
    finally:
        await client.close()
    text = await mesh.metrics()
    assert metric(text, "response_total", direction="inbound", status_code="200") == 1


async def curl(*args: str) -> list[str]:
    """One curl transfer over HTTP/2 prior knowledge (one per process: curl 7.88.1 breaks
    reusing a prior-knowledge connection, curl/curl#10634); its output lines."""
    proc = await asyncio.create_subprocess_exec(
        "curl",
        "-sS",
        "--http2-prior-knowledge",
        "-w",
        "\\n%{http_version} %{http_code} %{size_download}\\n",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    return out.decode().splitlines()


@bounded(20)
async def test_curl_speaks_http2_through_the_proxy_to_an_http1_backend(lab: Lab) -> None:
    # curl's HTTP/2 is nghttp2: an implementation independent of the `h2` we serve with
    v1, v2 = await lab.backend("v1"), await lab.backend("v2")
    mesh = await lab.mesh({"web": [], "web-v1": [v1], "web-v2": [v2]}, SMOKE_ROUTE)
    base = f"http://127.0.0.1:{mesh.outbound}"
    posted = await curl("-H", "Host: web.shop", "--data-binary", "hello h2", f"{base}/v2/echo")
    echo = json.loads(posted[0])
    assert echo["backend"] == "v2" and echo["body"] == "hello h2"
    assert echo["host"] == "web.shop" and echo["method"] == "POST"
    assert posted[1].startswith("2 200 ")
    big = await curl("-H", "Host: web", "-o", "/dev/null", f"{base}/big/300000")
    assert big == ["", "2 200 300000"]


GRPC_CALL = """
import sys, grpc
options = [("grpc.default_authority", "web.shop")]
with grpc.insecure_channel(sys.argv[1], options=options) as channel:
    try:
        channel.unary_unary("/pkg.Svc/Get")(b"\\x08\\x01", timeout=5)
    except grpc.RpcError as exc:
        print(exc.code().name, exc.details())
"""


@bounded(20)
async def test_a_grpcio_client_reads_the_proxy_answer_as_a_grpc_status(lab: Lab) -> None:
    # grpcio's HTTP/2 (C-core) is a third client; in a process of its own, whose exit closes
    # its connection (a channel closed in-process keeps its socket past the test)
    mesh = await lab.mesh({"web": [], "web-v1": []}, SMOKE_ROUTE)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        GRPC_CALL,
        f"127.0.0.1:{mesh.outbound}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert out.decode().strip() == "UNAVAILABLE no ready endpoints"
    while not metric(await mesh.metrics(), "tcp_close_total", peer="src"):
        await asyncio.sleep(0.01)
