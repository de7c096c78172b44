"""`turnout.viz.prom`: instant queries, asked of a real Prometheus (the control plane's,
`start_prometheus`) that scrapes a real proxy, and the errors of a Prometheus that is not
there or not one.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.proxy.e2e.backends import Backend
from tests.proxy.e2e.harness import bounded, dead_port
from turnout.engine.server.prometheus import PrometheusSettings, start_prometheus
from turnout.proxy.process import Address, ProxyConfig, StaticTable
from turnout.proxy.runner import start_proxy, stop_proxy
from turnout.proxy.table import RuntimeTable
from turnout.viz.prom import QueryError, instant_query, vector_from_answer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@bounded(40)
async def test_instant_queries_against_a_real_prometheus_scraping_a_proxy(tmp_path: Path) -> None:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed: `make tools` installs Debian's package")
    app = await Backend("web").start()
    config = ProxyConfig(
        namespace="shop",
        workload_name="web",
        pod="web-a",
        inbound=Address(host="127.0.0.1", port=0),
        app=Address(host="127.0.0.1", port=app.port),
        admin=Address(host="127.0.0.1", port=0),
    )
    proxy, task = await start_proxy(config, StaticTable(RuntimeTable.from_xds((), ())))
    assert proxy.admin is not None
    admin = f"127.0.0.1:{proxy.admin.addresses[0][1]}"
    targets = tmp_path / "targets.json"
    targets.write_text(json.dumps([{"targets": [admin], "labels": {"pod": "web-a"}}]))
    settings = PrometheusSettings(listen=f"127.0.0.1:{free_port()}", scrape_interval_ms=500)
    nobody = f"127.0.0.1:{dead_port()}"  # the control plane's job: not this test's business
    prom = await start_prometheus(
        tmp_path, targets_file=targets, control_plane=nobody, settings=settings
    )
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(4):
                inbound = f"http://127.0.0.1:{proxy.port_of(proxy.servers[0])}/echo"
                async with session.get(inbound) as resp:
                    assert resp.status == 200
        promql = 'sum by (pod, direction) (request_total{namespace="shop"})'
        got = []
        try:
            async with asyncio.timeout(15):
                while not (got := await instant_query(prom.url, promql)) or got[0].value != 4:
                    await asyncio.sleep(0.2)
        except TimeoutError:
            raise AssertionError(f"{promql}: still {got}") from None
        [sample] = got
        assert dict(sample.labels) == {"pod": "web-a", "direction": "inbound"}
        assert sample.at > 0

        assert await instant_query(prom.url, 'request_total{namespace="nowhere"}') == []
        nan = await instant_query(prom.url, "sum(request_total) / 0 * 0")
        assert len(nan) == 1 and math.isnan(nan[0].value)

        with pytest.raises(QueryError) as bad:
            await instant_query(prom.url, "sum(request_total")
        assert str(bad.value).startswith(
            f"prometheus {prom.url}: query failed (HTTP 400): bad_data"
        )
        assert "\n" not in str(bad.value)
        with pytest.raises(QueryError, match="gave a matrix result, not a vector"):
            await instant_query(prom.url, "request_total[1m]")
        with pytest.raises(QueryError, match="gave a scalar result, not a vector"):
            await instant_query(prom.url, "1 + 1")
    finally:
        await prom.stop()
        await stop_proxy(proxy, task)
        await app.stop()


async def test_a_prometheus_that_is_not_listening_is_one_line_naming_it() -> None:
    url = f"http://127.0.0.1:{dead_port()}"
    with pytest.raises(QueryError) as err:
        await instant_query(url, "up")
    assert str(err.value).startswith(f"prometheus {url}: cannot query: ")
    assert "refused" in str(err.value)


@pytest.fixture
async def not_prometheus() -> AsyncIterator[str]:
    """An HTTP server that answers every path with an HTML page."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(
            text="<html>\n<body>a login page</body>\n</html>", content_type="text/html"
        )

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_a_server_that_is_no_prometheus_is_one_line_quoting_it(not_prometheus: str) -> None:
    with pytest.raises(QueryError) as err:
        await instant_query(not_prometheus, "up")
    assert str(err.value) == (
        f"prometheus {not_prometheus}: not an API answer (HTTP 200):"
        " <html> <body>a login page</body> </html>"
    )


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        pytest.param({"status": "success"}, "a malformed result", id="no-data"),
        pytest.param(
            {"status": "success", "data": {"resultType": "vector", "result": [{"value": [1]}]}},
            "a malformed vector sample",
            id="bad-sample",
        ),
        pytest.param([1, 2], "query failed (HTTP 200): [1, 2]", id="not-an-object"),
    ],
)
def test_answers_that_are_no_vector_are_errors(answer: object, message: str) -> None:
    with pytest.raises(QueryError, match=re.escape(message)):
        vector_from_answer("http://p:9090", 200, json.dumps(answer).encode())
