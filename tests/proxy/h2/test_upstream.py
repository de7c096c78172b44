"""HTTP/1.1 clients through the proxy to HTTP/2 (h2c) upstreams: a Service port with
`appProtocol: kubernetes.io/h2c` is reached over HTTP/2, multiplexed on one connection;
trailers, flow control, bidi relaying, REFUSED_STREAM and GOAWAY (docs/http2.md)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.proxy.e2e.backends import Backend
from tests.proxy.e2e.harness import Mesh, bounded, route_to, service_yaml, start_mesh
from tests.proxy.h2.backends import H2Backend, pattern
from tests.support.h2client import H2Client
from turnout.cli.offline import offline_runtime

NS = "shop"


def h2_mesh_yaml(port: int, routes: str, *, app_protocol: str = "kubernetes.io/h2c") -> str:
    svc = service_yaml("web-h2", [port]).replace(
        '"name": "http", "port": 80}',
        f'"name": "http", "port": 80, "appProtocol": "{app_protocol}"}}',
    )
    return "\n---\n".join([service_yaml("web", []), svc, routes])


@pytest.fixture
async def h2b() -> AsyncIterator[H2Backend]:
    b = await H2Backend().start()
    yield b
    await b.stop()


@pytest.fixture
async def mesh(tmp_path: Path, h2b: H2Backend) -> AsyncIterator[Mesh]:
    f = tmp_path / "mesh.yaml"
    f.write_text(h2_mesh_yaml(h2b.port, route_to("web-h2")))
    table, diags = offline_runtime([str(f)], namespace=NS)
    assert not [d for d in diags if d.severity.value == "error"]
    m = await start_mesh(table)
    yield m
    await m.close()


@bounded(10)
async def test_an_h2c_service_is_reached_over_http2_host_becomes_authority_and_te_is_dropped(
    mesh: Mesh, h2b: H2Backend
) -> None:
    status, headers, body = await mesh.get(
        "web", "/echo?q=1", method="POST", data=b"hello", headers={"TE": "gzip"}
    )
    assert (status, body) == (200, b"hello")
    assert headers["x-backend"] == "h2"
    assert headers["x-authority"] == "web"
    assert headers["x-host-header"] == "-"  # Host went into :authority
    assert headers["x-te"] == "-"  # only `te: trailers` crosses into HTTP/2
    assert headers["x-path"] == "/echo?q=1"


@bounded(10)
async def test_concurrent_requests_share_one_connection(mesh: Mesh, h2b: H2Backend) -> None:
    results = await asyncio.gather(*(mesh.get("web", "/echo", data=b"x" * i) for i in range(20)))
    assert [r[2] for r in results] == [b"x" * i for i in range(20)]
    assert h2b.connections == 1
    assert mesh.proxy.pool.h2.open_count == 1


@bounded(10)
async def test_trailers_reach_an_http1_client_only_when_it_sent_te_trailers(
    mesh: Mesh,
) -> None:
    def request(te: bool) -> bytes:
        extra = b"TE: trailers\r\n" if te else b""
        return (
            b"POST /echo HTTP/1.1\r\nHost: web\r\nContent-Length: 2\r\n"
            + extra
            + b"Connection: close\r\n\r\nhi"
        )

    with_te = await mesh.raw(request(True))
    assert b"transfer-encoding: chunked" in with_te.lower()
    assert with_te.endswith(b"\r\n2\r\nhi\r\n0\r\nx-trailer: done\r\n\r\n")
    without = await mesh.raw(request(False))
    assert without.endswith(b"\r\n2\r\nhi\r\n0\r\n\r\n")


@bounded(15)
async def test_a_body_larger_than_every_window_is_relayed_whole(mesh: Mesh) -> None:
    n = 3 * 1024 * 1024  # > the 1 MiB connection window and the 64 KiB stream window
    status, _, body = await mesh.get("web", f"/big/{n}")
    assert status == 200
    assert body == pattern(n)


@bounded(10)
async def test_a_grpc_request_streams_both_ways_without_waiting_for_the_end(
    mesh: Mesh,
) -> None:
    """Bidi: each chunk comes back through the proxy before the next one is sent."""
    echoed: asyncio.Queue[bytes] = asyncio.Queue()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(3):
            part = f"part{i}".encode()
            yield part
            got = b""
            while len(got) < len(part):
                got += await echoed.get()
            assert got == part

    url = f"http://127.0.0.1:{mesh.outbound}/bidi"
    headers = {"Host": "web", "content-type": "application/grpc"}
    async with mesh.session.post(url, data=chunks(), headers=headers) as resp:
        assert resp.status == 200
        async for data in resp.content.iter_any():
            await echoed.put(data)


@bounded(10)
async def test_refused_stream_and_goaway_are_sent_again_as_not_processed(
    mesh: Mesh, h2b: H2Backend
) -> None:
    status, _, body = await mesh.get("web", "/refused", method="POST", data=b"a")
    assert (status, body) == (200, b"a")
    assert h2b.hits["/refused"] == 2
    status, _, body = await mesh.get("web", "/goaway", method="POST", data=b"b")
    assert (status, body) == (200, b"b")
    assert h2b.hits["/goaway"] == 2
    assert h2b.connections == 2  # the drained connection is not used again
    assert json  # (imported for the grpc tests below)


@bounded(20)
async def test_a_client_not_reading_pauses_its_stream_only_and_memory_stays_bounded(
    mesh: Mesh, h2b: H2Backend
) -> None:
    """The proxy stops acknowledging the slow client's stream: the upstream is held at
    that stream's window, while another stream on the same connection goes on."""
    n = 32 * 1024 * 1024
    reader, writer = await asyncio.open_connection("127.0.0.1", mesh.outbound)
    writer.write(f"GET /big/{n} HTTP/1.1\r\nHost: web\r\n\r\n".encode())
    await writer.drain()
    await reader.read(1024)  # the head and a little body; then nothing is read
    sent = -1
    while sent != h2b.sent:  # until the upstream is held (no more window)
        sent = h2b.sent
        await asyncio.sleep(0.2)
    assert sent < 16 * 1024 * 1024  # socket buffers plus one stream window, not 32 MiB
    status, _, body = await mesh.get("web", "/echo", method="POST", data=b"meanwhile")
    assert (status, body) == (200, b"meanwhile")
    assert h2b.connections == 1  # the same connection: only the slow stream is paused
    got = 1024
    while got < n:
        chunk = await reader.read(1 << 20)
        assert chunk
        got += len(chunk)
    assert h2b.sent == n
    writer.close()


@bounded(10)
async def test_an_h2_upstream_that_never_answers_is_cut_by_the_read_timeout(
    mesh: Mesh, h2b: H2Backend
) -> None:
    """No route timeout: the pool's read timeout (the HTTP/1.1 pool's, 60 s by default)
    ends the silent stream with a 504 and resets it; the connection stays for others."""
    mesh.proxy.pool.read_timeout_ms = 300  # read when the HTTP/2 pool is made (first use)
    status, headers, _ = await mesh.get("web", "/hang")
    assert (status, headers.getall("l5d-proxy-error")) == (504, ["upstream read timeout"])
    h2 = mesh.proxy.pool.h2
    assert [c.streams for c in h2._all] == [{}]  # reset, not left open on the connection
    status, _, body = await mesh.get("web", "/echo", method="POST", data=b"still")
    assert (status, body) == (200, b"still")
    assert h2b.connections == 1


MIRROR_OPTIONS = """filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: shadow-h2, port: 80}}"""


async def mirrored_mesh(tmp_path: Path, h2b: H2Backend) -> tuple[H2Backend, Mesh]:
    """A mesh whose route to `h2b` mirrors every request to a new h2c backend (returned)."""
    shadow = await H2Backend().start()
    shadow_svc = service_yaml("shadow-h2", [shadow.port]).replace(
        '"name": "http", "port": 80}', '"name": "http", "port": 80, "appProtocol": "h2c"}'
    )
    return shadow, await mirror_to(tmp_path, h2b, shadow_svc)


async def mirror_to(tmp_path: Path, h2b: H2Backend, shadow_svc: str) -> Mesh:
    """A mesh whose route to `h2b` mirrors every request to the Service `shadow_svc`."""
    mesh_file = tmp_path / "mirror.yaml"
    routes = route_to("web-h2", options=MIRROR_OPTIONS)
    mesh_file.write_text(h2_mesh_yaml(h2b.port, routes) + "\n---\n" + shadow_svc)
    table, _ = offline_runtime([str(mesh_file)], namespace=NS)
    return await start_mesh(table)


async def post_streamed(client: H2Client, h2b: H2Backend) -> bytes:
    """POST /big/5 whose body is still arriving when the call starts (relayed, not
    buffered: `h2_call.Replay`), answered 200; the body sent."""
    sid = client.start("POST", "/big/5", end=False)
    client.send(sid, b"first ", end=False)
    while h2b.hits["/big/5"] < 1:  # the call started on the first piece
        await asyncio.sleep(0.01)
    rest = pattern(200_000)  # over the stream windows: relayed as the upstream reads
    await client.send_all(sid, rest)
    resp = client.responses[sid]
    await resp.done.wait()
    assert (resp.status, bytes(resp.body)) == (200, pattern(5))
    return b"first " + rest


@bounded(10)
async def test_a_request_to_an_h2_upstream_is_mirrored_over_http2_to_an_h2c_mirror(
    tmp_path: Path, h2b: H2Backend
) -> None:
    shadow, m = await mirrored_mesh(tmp_path, h2b)
    try:
        status, headers, body = await m.get("web", "/echo", method="POST", data=b"copy me")
        assert (status, body, headers["x-backend"]) == (200, b"copy me", "h2")
        while shadow.hits["/echo"] < 1:  # fire and forget: bounded by the test's timeout
            await asyncio.sleep(0.01)
        assert h2b.hits["/echo"] == 1
    finally:
        await m.close()
        await shadow.stop()


@bounded(10)
async def test_a_streamed_http2_body_is_mirrored_as_it_is_relayed(
    tmp_path: Path, h2b: H2Backend
) -> None:
    """An HTTP/2 client's body still arriving when the call starts is relayed, not
    buffered (`h2_call.Replay`): the mirror gets it whole too, as Envoy's request mirror
    does, while the main request is answered."""
    shadow, m = await mirrored_mesh(tmp_path, h2b)
    client = await H2Client.open(("127.0.0.1", m.outbound))
    try:
        body = await post_streamed(client, h2b)
        assert h2b.received["/big/5"] == body
        while "/big/5" not in shadow.received:  # fire and forget: bounded by the timeout
            await asyncio.sleep(0.01)
        assert shadow.received["/big/5"] == body
    finally:
        await client.close()
        await m.close()
        await shadow.stop()


@bounded(10)
async def test_a_streamed_http2_body_is_mirrored_chunked_to_an_http1_mirror(
    tmp_path: Path, h2b: H2Backend
) -> None:
    """The same relayed body, mirrored to a Service without an HTTP/2 appProtocol: the
    copy goes over HTTP/1.1 as it is relayed (chunked: its length is not known yet)."""
    shadow = await Backend("shadow").start()
    m = await mirror_to(tmp_path, h2b, service_yaml("shadow-h2", [shadow.port]))
    client = await H2Client.open(("127.0.0.1", m.outbound))
    try:
        body = await post_streamed(client, h2b)
        while not shadow.seen:  # fire and forget: bounded by the test's timeout
            await asyncio.sleep(0.01)
        (seen,) = shadow.seen
        assert seen["path"] == "/big/5"
        assert seen["body"] == body.decode("latin-1")
        headers = {k.lower(): v for k, v in dict(seen["headers"]).items()}
        assert headers.get("transfer-encoding") == "chunked"
    finally:
        await client.close()
        await m.close()
        await shadow.stop()


@bounded(10)
async def test_trailers_of_a_small_sized_response_reach_clients_that_take_them(
    mesh: Mesh,
) -> None:
    """`/sized` has a content-length (buffered by the proxy) and a trailer: an HTTP/1.1
    client with `TE: trailers` gets it chunked, one without gets the sized body alone, an
    HTTP/2 client gets it in a last HEADERS frame."""

    def request(te: bool) -> bytes:
        extra = b"TE: trailers\r\n" if te else b""
        return (
            b"POST /sized HTTP/1.1\r\nHost: web\r\nContent-Length: 2\r\n"
            + extra
            + b"Connection: close\r\n\r\nhi"
        )

    with_te = await mesh.raw(request(True))
    assert b"transfer-encoding: chunked" in with_te.lower()
    assert with_te.endswith(b"\r\n2\r\nhi\r\n0\r\nx-trailer: done\r\n\r\n")
    without = await mesh.raw(request(False))
    assert b"content-length: 2\r\n" in without.lower()
    assert without.endswith(b"\r\n\r\nhi")
    client = await H2Client.open(("127.0.0.1", mesh.outbound))
    try:
        resp = await client.request("POST", "/sized", body=b"hi")
        assert (resp.status, bytes(resp.body)) == (200, b"hi")
        assert resp.header(b"content-length") == b"2"
        assert resp.trailers == [(b"x-trailer", b"done")]
    finally:
        await client.close()
