"""`viz.top`: tap events aggregated into Linkerd's top rows; `viz.tap`: the tap lines."""

from __future__ import annotations

from turnout.viz.tap import tap_line
from turnout.viz.top import Top, latency, render

PROXY = {"namespace": "shop", "workload": "web", "pod": "web-a", "admin": "127.0.0.1:1"}


def request(
    rid: str,
    path: str,
    *,
    status: int = 200,
    us: int = 900,
    grpc: int | None = None,
    **more: object,
) -> list[dict[str, object]]:
    base: dict[str, object] = {
        "id": rid,
        "direction": "outbound",
        "src": "127.0.0.1:5000",
        "dst": "127.0.0.1:8080",
        "tls": "disabled",
        "method": "GET",
        "authority": "emoji.shop.svc.cluster.local",
        "path": path,
        "dst_namespace": "shop",
        "dst_service": "emoji",
        "proxy": PROXY,
        **more,
    }
    end: dict[str, object] = {**base, "type": "end", "status": status, "duration_us": 5, "bytes": 2}
    if grpc is not None:
        end["grpc_status"] = grpc
    return [
        {**base, "type": "req"},
        {**base, "type": "rsp", "status": status, "latency_us": us},
        end,
    ]


def test_rows_merge_by_key_with_best_worst_last_and_success_rate() -> None:
    top = Top()
    for ev in [
        *request("1:0", "/a", us=900),
        *request("2:0", "/a", us=30_000, status=503),
        *request("3:0", "/a", us=2_500),
        *request("4:0", "/b", grpc=14),
    ]:
        top.add(ev)
    a, b = top.rows()
    assert (a.source, a.destination, a.method, a.path) == ("web-a", "emoji", "GET", "/a")
    assert (a.count, a.best_us, a.worst_us, a.last_us) == (3, 900, 30_000, 2_500)
    assert a.successes == 2 and b.count == 1 and b.successes == 0  # grpc Unavailable fails


def test_an_end_without_its_req_is_ignored_and_ids_are_per_proxy() -> None:
    top = Top()
    other = {**PROXY, "admin": "127.0.0.1:2", "pod": "web-b"}
    top.add(request("1:0", "/a")[2])
    assert top.rows() == []
    for ev in [*request("1:0", "/a"), *request("1:0", "/a", proxy=other)]:
        top.add(ev)
    assert sorted(r.source for r in top.rows()) == ["web-a", "web-b"]


def test_routes_and_hide_sources_change_the_key_and_the_columns() -> None:
    top = Top(routes=True, hide_sources=True)
    other = {**PROXY, "admin": "127.0.0.1:2", "pod": "web-b"}
    for ev in [*request("1:0", "/a", route="r/0"), *request("1:0", "/b", route="r/0", proxy=other)]:
        top.add(ev)
    [row] = top.rows()
    assert row.count == 2 and row.path == "r/0"
    head, line = render(top.rows(), routes=True, hide_sources=True)
    assert head.split() == [
        "Destination",
        "Route",
        "Count",
        "Best",
        "Worst",
        "Last",
        "Success",
        "Rate",
    ]
    assert line.split() == ["emoji", "r/0", "2", "900µs", "900µs", "900µs", "100.00%"]


def test_latency_units() -> None:
    assert [latency(u) for u in (812, 3_400, 27_000, 1_200_000)] == [
        "812µs",
        "3.4ms",
        "27ms",
        "1.2s",
    ]


def test_tap_lines_plain_and_wide() -> None:
    req, rsp, end = request("7:0", "/a", grpc=0, route="r/0")
    assert tap_line(req) == (
        "req id=7:0 proxy=out src=127.0.0.1:5000 dst=127.0.0.1:8080 tls=disabled"
        " :method=GET :authority=emoji.shop.svc.cluster.local :path=/a"
    )
    assert tap_line(rsp).endswith(":status=200 latency=900µs")
    assert tap_line(end).endswith("grpc-status=OK duration=5µs response-length=2B")
    assert tap_line(req, wide=True).endswith(
        " dst_ns=shop dst_res=svc/emoji src_ns=shop src_pod=web-a src_res=deploy/web rt_route=r/0"
    )
    inbound = {**req, "direction": "inbound", "dst_service": ""}
    assert " proxy=in  src=" in tap_line(inbound)
    assert tap_line(inbound, wide=True).endswith(
        "dst_ns=shop dst_pod=web-a dst_res=deploy/web rt_route=r/0"
    )
