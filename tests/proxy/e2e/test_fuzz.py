"""Random valid HTTP requests through the whole proxy (listener, handler, pool, backend).

The proxy runs on an `asyncio.Runner` loop that each example drives for its own exchange
(hypothesis' `@given` needs a synchronous test), with the loop's exception handler
collecting anything that escapes a task. Every answer must be well formed, nothing may
escape, and afterwards a normal request and `/live` must still work.
"""

from __future__ import annotations

import asyncio
import json
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import Mesh
from tests.proxy.e2e.manifests import LIMITS_ROUTES
from turnout.proxy.transport.messages import HOP_BY_HOP

TCHAR = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
PCHAR = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/"
FRAMING = {"host", "content-length", "transfer-encoding", "connection", "upgrade", "expect"}
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "PURGE", "REPORT"]

tokens = st.text(alphabet=TCHAR, min_size=1, max_size=20)
field_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60
).map(str.strip)
segments = st.one_of(
    st.text(alphabet=PCHAR, max_size=12),
    st.integers(0, 255).map(lambda b: f"%{b:02X}"),
)
# Under /echo, so a random path never selects a backend mode such as /status/0.
paths = st.lists(segments, max_size=6).map(lambda parts: "/echo/" + "/".join(parts))
queries = st.one_of(st.just(""), st.text(alphabet=PCHAR + "?", max_size=20).map("?{}".format))
headers = st.lists(
    st.tuples(tokens.filter(lambda n: n.lower() not in FRAMING), field_values), max_size=12
)
requests = st.fixed_dictionaries(
    {
        # Mostly methods httptools knows (the others can only be answered 400).
        "method": st.one_of(*[st.sampled_from(METHODS)] * 4, tokens.map(str.upper)),
        "target": st.tuples(paths, queries).map("".join),
        "headers": headers,
        "body": st.one_of(st.just(b""), st.binary(max_size=2000)),
    }
)


class Proxy:
    """A lab on its own loop, driven one exchange at a time."""

    def __init__(self, tmp: Path) -> None:
        self.runner = asyncio.Runner()
        self.errors: list[dict[str, Any]] = []
        self.runner.get_loop().set_exception_handler(lambda _loop, ctx: self.errors.append(ctx))
        self.lab = Lab(tmp)
        self.mesh: Mesh = self.runner.run(self._start())

    async def _start(self) -> Mesh:
        v1, raw = await self.lab.backend("v1"), await self.lab.raw_backend()
        return await self.lab.mesh({"web": [], "web-v1": [v1], "raw": [raw]}, LIMITS_ROUTES)

    def send(self, data: bytes) -> bytes:
        async def go() -> bytes:
            async with asyncio.timeout(5):
                return await self.mesh.raw(data)

        return self.runner.run(go())

    def close(self) -> None:
        self.runner.run(self.lab.close())
        self.runner.close()


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Proxy]:
    p = Proxy(tmp_path)
    try:
        yield p
    finally:
        p.close()


def test_random_valid_requests_never_crash_the_proxy(proxy: Proxy) -> None:
    @settings(
        max_examples=300,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
    )
    @given(req=requests)
    def throw(req: dict[str, Any]) -> None:
        method, target, body = req["method"], req["target"], req["body"]
        head = [f"{method} {target} HTTP/1.1", "host: web", "connection: close"]
        head += [f"{n}: {v}" for n, v in req["headers"]]
        if body or method in ("POST", "PUT", "PATCH"):
            head.append(f"content-length: {len(body)}")
        answer = proxy.send(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        assert answer.startswith(b"HTTP/1.1 "), answer[:100]
        status = int(answer[9:12])
        # httptools knows a fixed set of methods: others are answered 400, never 500.
        assert status in (200, 400), answer[:300]
        if status == 200 and method != "HEAD":
            echo = json.loads(answer.split(b"\r\n\r\n", 1)[1])
            assert echo["method"] == method
            assert echo["body"] == body.decode("latin-1")
            got = [(k.lower(), v) for k, v in echo["header_list"]]
            for name, value in req["headers"]:
                if name.lower() not in HOP_BY_HOP:
                    assert (name.lower(), value) in got, (name, value)
        assert proxy.errors == []

    throw()
    status, headers, _ = proxy.runner.run(proxy.mesh.get("web", "/echo"))
    assert (status, headers["x-backend"]) == (200, "v1")
    assert proxy.runner.run(proxy.mesh.admin_get("/live"))[0] == 200
    assert proxy.errors == []
