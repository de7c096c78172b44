"""Clients do not choose metric labels: whatever Host, path, method or header values they
send, `/metrics` keeps the same series. A Host naming nothing in the table is counted as
``authority="unknown"``; a known one by the domain of the table it matched (``WEB.shop``
is ``web.shop``); paths, methods and headers are never labels."""

from __future__ import annotations

from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import Mesh, bounded, metric, route_to

OUT = {"direction": "outbound", "namespace": "shop", "deployment": "client"}


def series(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


async def pipelined(mesh: Mesh, heads: list[str]) -> int:
    """Send `heads` (request lines and headers, no blank line) on one connection, one after
    the other without waiting; the number of responses that came back."""
    data = "".join(f"{h}\r\n\r\n" for h in heads[:-1]) + f"{heads[-1]}\r\nconnection: close\r\n\r\n"
    answer = await mesh.raw(data.encode())
    return answer.count(b"HTTP/1.1 ")


def _case(name: str, i: int) -> str:
    """`name` with the letters whose bit is set in `i` upper-cased."""
    return "".join(c.upper() if i >> k & 1 else c for k, c in enumerate(name))


@bounded(60)
async def test_two_thousand_distinct_hosts_leave_the_series_count_unchanged(lab: Lab) -> None:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, route_to("web-v1"))
    # one of each kind first: two of the Service's names (each its own series: the table's
    # domains bound them), an unknown Host, a known name on a port the Service lacks
    warm = ["GET /echo HTTP/1.1\r\nhost: web", "GET /echo HTTP/1.1\r\nhost: web.shop"]
    warm += ["GET / HTTP/1.1\r\nhost: nowhere.example", "GET / HTTP/1.1\r\nhost: web.shop:8080"]
    assert await pipelined(mesh, warm) == 4
    before = series(await mesh.metrics())

    unknown = [f"GET /x HTTP/1.1\r\nhost: h{i}.example" for i in range(2000)]
    for i in range(0, len(unknown), 250):
        assert await pipelined(mesh, unknown[i : i + 250]) == 250
    cases = [f"GET /echo HTTP/1.1\r\nhost: {_case('web.shop', i)}" for i in range(1, 256)]
    ports = [f"GET / HTTP/1.1\r\nhost: web.shop:{9000 + i}" for i in range(100)]
    chosen = [
        f"{m} /p/{i}?q={i} HTTP/1.1\r\nhost: web\r\nuser-agent: ua-{i}\r\nx-id: {i}"
        for i, m in enumerate(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] * 50)
    ]
    for batch in (cases, ports, chosen):
        assert await pipelined(mesh, batch) == len(batch)

    after = series(await mesh.metrics())
    new = {s.rsplit(" ", 1)[0] for s in after} - {s.rsplit(" ", 1)[0] for s in before}
    assert len(after) == len(before), sorted(new)[:5]
    text = await mesh.metrics()
    assert metric(text, "request_total", **OUT, authority="unknown") == 2 + 2000 + 100
    assert metric(text, "request_total", **OUT, authority="web.shop") == 1 + 255
    assert metric(text, "request_total", **OUT, authority="web") == 1 + 300
