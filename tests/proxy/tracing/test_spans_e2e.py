"""Two real proxies in one trace: a client's outbound proxy calls the server's inbound proxy,
which calls the app; both export their spans over OTLP/HTTP (JSON) to a receiver in the test.

The proxies are stopped before the spans are read: stopping flushes the exporter's queue, so
the test waits for no timer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.proxy.e2e.backends import Backend
from tests.proxy.e2e.harness import NS, bounded, compile_runtime, route_to
from turnout.proxy.process import Address, ProxyConfig, StaticTable, TraceConfig
from turnout.proxy.runner import start_proxy, stop_proxy
from turnout.proxy.table import RuntimeTable

ANY = Address(host="127.0.0.1", port=0)
CALLER = b"4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = b"00f067aa0ba902b7"
SPAN_KIND_SERVER, SPAN_KIND_CLIENT = 2, 3
"""OTLP's `Span.SpanKind` numbers (OTLP/JSON writes enums as numbers)."""
STATUS_UNSET, STATUS_ERROR = 0, 2


@dataclass
class Span:
    service: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    status: int
    attributes: dict[str, Any]


@dataclass
class Receiver:
    """An OTLP/HTTP trace collector (``POST /v1/traces``, JSON): keeps every span it is sent."""

    spans: list[Span] = field(default_factory=list)
    requests: int = 0

    async def export(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/json"
        body = await request.json()
        self.requests += 1
        for rs in body["resourceSpans"]:
            resource = {a["key"]: _value(a["value"]) for a in rs["resource"]["attributes"]}
            for ss in rs["scopeSpans"]:
                assert ss["scope"]["name"] == "turnout.proxy"
                for s in ss["spans"]:
                    assert int(s["endTimeUnixNano"]) >= int(s["startTimeUnixNano"]) > 0
                    self.spans.append(
                        Span(
                            service=resource["service.name"],
                            trace_id=s["traceId"],
                            span_id=s["spanId"],
                            parent_id=s.get("parentSpanId", ""),
                            kind=s["kind"],
                            status=s.get("status", {}).get("code", STATUS_UNSET),
                            attributes={a["key"]: _value(a["value"]) for a in s["attributes"]},
                        )
                    )
        return web.json_response({})

    def of(self, service: str) -> list[Span]:
        return [s for s in self.spans if s.service == service]


def _value(v: dict[str, Any]) -> Any:
    """An OTLP/JSON ``AnyValue``: ``intValue`` is a string (64-bit), as the spec writes it."""
    ((kind, value),) = v.items()
    return int(value) if kind == "intValue" else value


@dataclass
class Chain:
    receiver: Receiver
    app: Backend
    session: aiohttp.ClientSession
    outbound: int

    async def get(self, path: str, headers: dict[str, str] | None = None) -> int:
        url = f"http://127.0.0.1:{self.outbound}{path}"
        hdrs = {"Host": "web.shop:80", **(headers or {})}
        async with self.session.get(url, headers=hdrs) as resp:
            await resp.read()
            return resp.status

    def app_saw(self, header: str) -> list[str]:
        """`header` as the app received it, one value per request ("" when absent)."""
        out = []
        for seen in self.app.seen:
            headers = seen["headers"]
            assert isinstance(headers, dict)
            out.append(str(headers.get(header, "")))
        return out


@asynccontextmanager
async def chain(tmp_path: Path, *, sample_per_million: int, rule: str = "") -> AsyncIterator[Chain]:
    """Receiver, app, the server proxy (inbound, workload ``api``) and the client proxy
    (outbound, workload ``client``, Service ``web`` = the server proxy's inbound port; `rule`:
    more of its route's rule, YAML). Leaving stops the proxies (their spans flushed) before
    the receiver."""
    receiver = Receiver()
    collector = web.Application()
    collector.router.add_post("/v1/traces", receiver.export)
    runner = web.AppRunner(collector)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    otlp = runner.addresses[0][1]
    app = await Backend("api").start()
    procs = []
    try:

        def trace(name: str) -> TraceConfig:
            return TraceConfig(
                otlp=f"127.0.0.1:{otlp}", sample_per_million=sample_per_million, service_name=name
            )

        api = ProxyConfig(
            namespace=NS,
            workload_name="api",
            inbound=ANY,
            app=Address(host="127.0.0.1", port=app.port),
            trace=trace("api"),
        )
        procs.append(await start_proxy(api, StaticTable(RuntimeTable.from_xds((), ()))))
        inbound = procs[0][0].port_of(procs[0][0].servers[0])
        table = compile_runtime(tmp_path, {"web": [inbound]}, route_to("web", options=rule))
        client = ProxyConfig(
            namespace=NS, workload_name="client", outbound=ANY, trace=trace("client")
        )
        procs.append(await start_proxy(client, StaticTable(table)))
        outbound = procs[1][0].port_of(procs[1][0].servers[0])
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            lab = Chain(receiver, app, session, outbound)
            yield lab
            for proxy, task in reversed(procs):
                await stop_proxy(proxy, task)
            procs.clear()
    finally:
        for proxy, task in reversed(procs):
            await stop_proxy(proxy, task)
        await app.stop()
        await runner.cleanup()


@bounded(60)
async def test_the_server_proxys_span_is_the_child_of_the_client_proxys(tmp_path: Path) -> None:
    async with chain(tmp_path, sample_per_million=1_000_000) as lab:
        assert await lab.get("/hello") == 200
        assert await lab.get("/status/503") == 503
    client, server = lab.receiver.of("client"), lab.receiver.of("api")
    assert len(client) == 2 and len(server) == 2
    for c, s, status in zip(client, server, (200, 503), strict=True):
        assert s.trace_id == c.trace_id
        assert s.parent_id == c.span_id
        assert c.parent_id == ""  # no trace came in: the client proxy started it
        assert c.kind == SPAN_KIND_CLIENT
        assert s.kind == SPAN_KIND_SERVER
        assert c.attributes["http.request.method"] == "GET"
        assert c.attributes["http.response.status_code"] == status
        assert s.attributes["http.response.status_code"] == status
        assert c.attributes["turnout.route"] == "HTTPRoute/shop/web"
        assert c.attributes["turnout.route.rule"].startswith("httproute/shop/web/rule/0")
        assert c.attributes["turnout.backend"]
        assert c.attributes["turnout.retries"] == 0
    ok = STATUS_UNSET
    error = STATUS_ERROR
    assert [c.status for c in client] == [ok, error]
    traceparents = lab.app_saw("traceparent")
    assert traceparents == [f"00-{s.trace_id}-{s.span_id}-01" for s in server]


@bounded(60)
async def test_each_retry_is_a_child_of_the_one_client_span(tmp_path: Path) -> None:
    retry = "retry: {codes: [503], attempts: 2, backoff: 1ms}"
    async with chain(tmp_path, sample_per_million=1_000_000, rule=retry) as lab:
        assert await lab.get("/status/503") == 503
    (client,) = lab.receiver.of("client")
    server = lab.receiver.of("api")
    assert client.attributes["turnout.retries"] == 2
    assert len(server) == 3
    assert {s.parent_id for s in server} == {client.span_id}
    assert client.status == STATUS_ERROR


@bounded(60)
async def test_an_incoming_traceparent_is_continued(tmp_path: Path) -> None:
    incoming = f"00-{CALLER.decode()}-{CALLER_SPAN.decode()}-01"
    async with chain(tmp_path, sample_per_million=0) as lab:
        headers = {"traceparent": incoming, "tracestate": "congo=t61rcWkgMzE"}
        assert await lab.get("/hello", headers) == 200
    (client,) = lab.receiver.of("client")
    (server,) = lab.receiver.of("api")
    assert client.trace_id == server.trace_id == CALLER.decode()
    assert client.parent_id == CALLER_SPAN.decode()
    assert server.parent_id == client.span_id
    assert lab.app_saw("tracestate") == ["congo=t61rcWkgMzE"]


@bounded(60)
async def test_an_incoming_b3_context_is_continued(tmp_path: Path) -> None:
    async with chain(tmp_path, sample_per_million=1_000_000) as lab:
        b3 = {"x-b3-traceid": CALLER.decode(), "x-b3-spanid": CALLER_SPAN.decode()}
        assert await lab.get("/hello", {**b3, "x-b3-sampled": "1"}) == 200
    (client,) = lab.receiver.of("client")
    (server,) = lab.receiver.of("api")
    assert client.trace_id == CALLER.decode() and client.parent_id == CALLER_SPAN.decode()
    assert server.parent_id == client.span_id
    assert lab.app_saw("x-b3-spanid") == [server.span_id]
    assert lab.app_saw("x-b3-parentspanid") == [client.span_id]


@bounded(60)
async def test_sampling_zero_sends_no_spans_but_still_propagates(tmp_path: Path) -> None:
    async with chain(tmp_path, sample_per_million=0) as lab:
        assert await lab.get("/hello") == 200
        unsampled = f"00-{CALLER.decode()}-{CALLER_SPAN.decode()}-00"
        assert await lab.get("/hello", {"traceparent": unsampled}) == 200
    assert lab.receiver.spans == []
    fresh, continued = lab.app_saw("traceparent")
    version, trace_id, parent, flags = fresh.split("-")
    assert version == "00" and flags == "00" and len(trace_id) == 32
    assert parent != "0" * 16
    version, trace_id, parent, flags = continued.split("-")
    assert trace_id == CALLER.decode() and flags == "00"
    assert parent not in (CALLER_SPAN.decode(), "0" * 16)
