"""`mesh authz`: the authorization and TLS views computed from two expositions (the label
contract of ``inbound_http_authz_allow_total`` / ``_deny_total``, in Linkerd's order), and the
command against a real proxy admin: its inbound request metrics carry the TLS labels."""

from __future__ import annotations

import asyncio
import io
import json

import aiohttp
import pytest

from tests.proxy.e2e.backends import Backend
from tests.proxy.e2e.harness import _ReadySource, bounded
from turnout.cli.live import plaintext_lines
from turnout.cli.live_authz import authz_table, tls_table, view_data
from turnout.cli.main import main
from turnout.proxy.process import Address, ProxyConfig
from turnout.proxy.runner import start_proxy, stop_proxy
from turnout.proxy.table import RuntimeTable
from turnout.viz.authz import Target, inbound_view
from turnout.viz.stats import Scrape

WEB = "web.shop.serviceaccount.identity.cluster.local"
W = 'direction="inbound",namespace="shop",deployment="api"'
ADDR = 'target_addr="10.1.0.5:8080",target_ip="10.1.0.5",target_port="8080"'
SRV = 'srv_group="policy.linkerd.io",srv_kind="server",srv_name="api-http",srv_port="8080"'
DEF = 'srv_group="",srv_kind="default",srv_name="all-unauthenticated",srv_port="8080"'
ROUTE = 'route_group="",route_kind="default",route_name="default"'
AP = 'authz_group="policy.linkerd.io",authz_kind="AuthorizationPolicy",authz_name="web-public"'
MTLS = f'tls="true",client_id="{WEB}"'
PLAIN = 'tls="no_identity",no_tls_reason="no_tls_from_remote"'
TARGET = Target.parse("deploy/api", namespace="shop")


def exposition(allowed: int, denied: int, plain: int, ok: int, fail: int) -> str:
    lat = f"{W},{ADDR},{MTLS},{SRV},{ROUTE},{AP}"
    return "\n".join(
        [
            f"inbound_http_authz_allow_total{{{W},{ADDR},{MTLS},{SRV},{ROUTE},{AP}}} {allowed}",
            f"inbound_http_authz_deny_total{{{W},{ADDR},{PLAIN},{SRV},{ROUTE}}} {denied}",
            f"inbound_http_authz_allow_total{{{W},{ADDR},{PLAIN},{DEF},{ROUTE},"
            'authz_group="",authz_kind="default",authz_name="all-unauthenticated"} 0',
            f"request_total{{{W},{ADDR},{MTLS}}} {allowed}",
            f"request_total{{{W},{ADDR},{PLAIN}}} {plain}",
            f'response_total{{{lat},status_code="200",classification="success",'
            f'grpc_status="",error=""}} {ok}',
            f'response_total{{{lat},status_code="500",classification="failure",'
            f'grpc_status="",error=""}} {fail}',
            f'response_latency_ms_bucket{{{lat},status_code="200",le="10"}} {ok + fail}',
            f'response_latency_ms_bucket{{{lat},status_code="200",le="+Inf"}} {ok + fail}',
            # another workload's series never count
            'request_total{direction="inbound",namespace="shop",deployment="web",'
            f"{ADDR},{PLAIN}}} 999",
        ]
    )


def test_rows_follow_the_allow_and_deny_counters_and_the_request_metrics() -> None:
    view = inbound_view(
        exposition(10, 2, 0, 10, 0), exposition(30, 12, 40, 28, 2), seconds=10.0, target=TARGET
    )
    table = authz_table(view).splitlines()
    assert table[0].split() == [
        *("ROUTE", "SERVER", "AUTHORIZATION", "UNAUTHORIZED", "SUCCESS", "RPS"),
        *("LATENCY_P50", "LATENCY_P95", "LATENCY_P99"),
    ]
    rows = [line.split() for line in table[1:]]
    # the idle default server's row is left out
    assert rows == [
        [
            *("default", "api-http", "authorizationpolicy/web-public", "0.0rps", "90.00%"),
            *("2.0rps", "5ms", "9ms", "9ms"),
        ],
        ["default", "api-http", "-", "1.0rps", "-", "-", "-", "-", "-"],
    ]
    tls = [line.split() for line in tls_table(view).splitlines()]
    assert tls[0] == ["SERVER", "PORT", "CLIENT", "TLS", "RPS"]
    assert tls[1:] == [
        ["-", "8080", WEB, "mTLS", "2.0rps"],
        ["-", "8080", "-", "PLAINTEXT", "(no_tls_from_remote)", "4.0rps"],
    ]
    data = view_data(view)
    assert data["tls"][1] == {  # type: ignore[index]
        "server": "",
        "port": 8080,
        "client_id": "",
        "tls": "no_tls_from_remote",
        "plaintext": True,
        "rps": 4.0,
    }


def test_routes_live_counts_plaintext_per_inbound_port_of_every_workload() -> None:
    before = [Scrape("a", 0.0, exposition(10, 2, 0, 10, 0))]
    after = [Scrape("a", 10.0, exposition(30, 12, 40, 28, 2)), Scrape("b", 10.0, error="down")]
    after[0] = Scrape("a", 10.0, after[0].text.replace("} 999", "} 1009"))
    # every workload's series count here: the other one's 10 plaintext requests too
    assert plaintext_lines(before, after) == "inbound port 8080: 5.0rps plaintext of 7.0rps\n"


def test_a_default_server_prints_as_default_policy_and_a_reset_counter_counts_whole() -> None:
    before = exposition(0, 0, 0, 0, 0).replace("} 0\nrequest_total", "} 50\nrequest_total", 1)
    after = exposition(0, 0, 0, 0, 0).replace("} 0\nrequest_total", "} 5\nrequest_total", 1)
    view = inbound_view(before, after, seconds=5.0, target=TARGET)
    [row] = [r for r in view.authz.values() if r.rps]
    assert row.key.server == "default:all-unauthenticated"
    assert row.key.authorization == "default/all-unauthenticated"
    assert row.rps == 1.0


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["authz", "web", "--admin", "127.0.0.1:1"], "want KIND/NAME"),
        (["authz", "svc/web", "--admin", "127.0.0.1:1"], "unknown kind 'svc'"),
        (["authz", "deploy/web"], "needs --admin"),
        (["authz", "deploy/web", "--admin", ":1", "--window", "0"], "--window must be > 0"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(argv: list[str], says: str) -> None:
    err = io.StringIO()
    assert main(argv, stdout=io.StringIO(), stderr=err) == 2
    assert says in err.getvalue() and err.getvalue().count("\n") == 1, err.getvalue()


@bounded(30)
async def test_mesh_authz_tls_reads_a_real_proxy_admin() -> None:
    app = await Backend("api").start()
    applied = asyncio.Event()
    config = ProxyConfig(
        namespace="shop",
        workload_name="api",
        inbound=Address(host="127.0.0.1", port=0),
        app=Address(host="127.0.0.1", port=app.port),
        admin=Address(host="127.0.0.1", port=0),
    )
    proxy, task = await start_proxy(config, _ReadySource(RuntimeTable.from_xds((), ()), applied))
    try:
        await applied.wait()
        assert proxy.admin is not None
        admin = f"127.0.0.1:{proxy.admin.addresses[0][1]}"
        inbound = proxy.port_of(proxy.servers[0])
        out, err = io.StringIO(), io.StringIO()
        argv = ["authz", "deploy/api", "-n", "shop", "--admin", admin, "--window", "1.5"]
        argv += ["--tls", "-o", "json"]
        run = asyncio.get_running_loop().run_in_executor(
            None, lambda: main(argv, stdout=out, stderr=err)
        )
        await asyncio.sleep(0.4)  # after the first scrape
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                async with session.get(f"http://127.0.0.1:{inbound}/", headers={"Host": "api"}):
                    pass
        assert await run == 0, err.getvalue()
        [row] = json.loads(out.getvalue())["tls"]
        assert row["tls"] == "disabled" and row["plaintext"] is True
        assert row["port"] == app.port and row["rps"] > 0
    finally:
        await stop_proxy(proxy, task)
        await app.stop()
