"""Limits, bad input and broken upstreams through the whole proxy (listener to backend)."""

from __future__ import annotations

import aiohttp
import pytest

from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import Mesh, bounded, metric
from tests.proxy.e2e.manifests import LIMITS_ROUTES


async def _mesh(lab: Lab) -> Mesh:
    v1, raw = await lab.backend("v1"), await lab.raw_backend()
    return await lab.mesh({"web": [], "web-v1": [v1], "raw": [raw]}, LIMITS_ROUTES)


def _status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:80]
    return int(answer[9:12])


async def _still_serves(mesh: Mesh) -> None:
    status, headers, _ = await mesh.get("web", "/echo")
    assert (status, headers["x-backend"]) == (200, "v1")
    assert (await mesh.admin_get("/live"))[0] == 200


@bounded(10)
async def test_too_many_request_headers_are_answered_431(lab: Lab) -> None:
    mesh = await _mesh(lab)
    headers = "".join(f"x-h{i}: v\r\n" for i in range(150))
    answer = await mesh.raw(f"GET /echo HTTP/1.1\r\nhost: web\r\n{headers}\r\n".encode())
    assert _status(answer) == 431
    too_big = "x-big: " + "a" * 20_000 + "\r\n"
    answer = await mesh.raw(f"GET /echo HTTP/1.1\r\nhost: web\r\n{too_big}\r\n".encode())
    assert _status(answer) == 431
    assert lab.backends[0].total == 0  # type: ignore[union-attr]
    await _still_serves(mesh)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x01\x02 garbage\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /echo HTTP/1.9\r\nhost: web\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nbad header\r\n\r\n",
        b"GET /e cho HTTP/1.1\r\nhost: web\r\n\r\n",
    ],
    ids=["binary", "no-target", "bad-version", "header-without-colon", "space-in-target"],
)
@bounded(10)
async def test_a_malformed_request_is_answered_400(lab: Lab, garbage: bytes) -> None:
    mesh = await _mesh(lab)
    assert _status(await mesh.raw(garbage)) == 400
    await _still_serves(mesh)


@bounded(10)
async def test_an_upstream_reset_before_the_response_answers_a_gateway_error(lab: Lab) -> None:
    mesh = await _mesh(lab)
    status, _, _ = await mesh.get("web", "/raw/reset")
    assert status in (502, 503)
    await _still_serves(mesh)


@bounded(10)
async def test_an_upstream_reset_mid_body_before_anything_is_sent_answers_502(lab: Lab) -> None:
    mesh = await _mesh(lab)
    # A small announced body is read whole before the answer starts: nothing was sent yet.
    status, _, _ = await mesh.get("web", "/raw/midbody/4000")
    assert status == 502
    await _still_serves(mesh)
    text = await mesh.metrics()
    assert metric(text, "response_total", status_code="502", classification="failure") == 1


@bounded(10)
async def test_an_upstream_reset_mid_streamed_body_closes_the_client_connection(
    lab: Lab,
) -> None:
    mesh = await _mesh(lab)
    with pytest.raises(aiohttp.ClientPayloadError):
        await mesh.get("web", "/raw/midbody/200000")
    await _still_serves(mesh)
    # The broken exchange is still counted, as a failure with the upstream's error.
    text = await mesh.metrics()
    broken = {"status_code": "200", "error": "UpstreamProtocolError"}
    assert metric(text, "response_total", classification="failure", **broken) == 1
