"""RFC 9112 strictness through the whole proxy: heads nginx refuses are refused with
`l5d-proxy-error` and never reach a backend."""

from __future__ import annotations

import pytest

from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import bounded
from tests.proxy.e2e.manifests import SMOKE_ROUTE


@pytest.mark.parametrize(
    ("request_bytes", "status", "cause"),
    [
        (b"GET /echo HTTP/1.1\r\nHost: web\r\nHost: other\r\n\r\n", 400, "malformed request"),
        (b"GET /echo HTTP/1.1\r\nHost: other\r\nHost: web\r\n\r\n", 400, "malformed request"),
        (
            b"POST /echo HTTP/1.0\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
            400,
            "malformed request",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
            501,
            "transfer coding not implemented",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
            501,
            "transfer coding not implemented",
        ),
        (b"GET /echo HTTP/2.0\r\nHost: web\r\n\r\n", 505, "http version not supported"),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "http version not supported"),
    ],
    ids=[
        "two-hosts",
        "two-hosts-reversed",
        "chunked-in-http-1.0",
        "gzip-chunked",
        "chunked-gzip",
        "http-2.0",
        "http2-preface",
    ],
)
@bounded(10)
async def test_a_head_nginx_refuses_is_refused_before_any_backend(
    lab: Lab, request_bytes: bytes, status: int, cause: str
) -> None:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, SMOKE_ROUTE)
    answer = await mesh.raw(request_bytes)  # read until the proxy closes
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    assert head.startswith(f"http/1.1 {status} "), answer
    assert f"\r\nl5d-proxy-error: {cause}\r\n" in head
    assert v1.total == 0
    status_ok, _, _ = await mesh.get("web", "/echo")  # the proxy still serves
    assert status_ok == 200
