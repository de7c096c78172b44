"""`mesh stat` and `mesh edges` on the demo's mesh (`viz_lab`): through its real Prometheus,
through the direct scrape, and their errors; numbers checked against the proxies' counters."""

from __future__ import annotations

import io
import json
import time

import pytest

from tests.proxy.e2e.harness import dead_port
from tests.viz.lab import LAB_RPS, Lab
from turnout.cli.main import main
from turnout.viz.stats import parse_text

pytestmark = pytest.mark.slow


def mesh(lab: Lab, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*argv, "--control-plane", lab.control_plane], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def inbound_responses(lab: Lab, pod: str) -> tuple[float, float]:
    """(success, failure) responses the inbound proxy of `pod` has counted so far."""
    ok = bad = 0.0
    for s in parse_text(lab.metrics(pod)):
        if s.name == "response_total" and s.labels.get("direction") == "inbound":
            if s.labels.get("classification") == "success":
                ok += s.value
            else:
                bad += s.value
    return ok, bad


def test_stat_from_prometheus_shows_linkerd_columns_and_the_failing_votes(viz_lab: Lab) -> None:
    code, out, err = mesh(viz_lab, "stat", "deploy", "-n", "emojivoto", "-t", "6s")
    assert code == 0, err
    assert err == ""  # Prometheus answered: no fallback line
    lines = out.splitlines()
    assert lines[0].split() == [
        "NAME", "MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99",
        "TCP_CONN",
    ]  # fmt: skip
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert {"emoji", "voting-v1", "voting-v2", "web-v1", "web-v2"} <= set(rows), out
    web = rows["web-v1"]
    assert web[1] == "1/1" and web[2].endswith("%") and web[3].endswith("rps"), web
    # web-v1 answers 500 when voting fails (the demo's VoteDoughnut fault): below 100%
    assert float(web[2].rstrip("%")) < 100, out
    assert all(c.endswith("ms") for c in web[4:7]), web
    # proxyless: no inbound proxy, its server interceptor's series (grpcmesh.server)
    assert rows["emoji"][2].endswith("%") and rows["emoji"][3].endswith("rps"), out


def test_stat_json_numbers_agree_with_the_proxies_counters(viz_lab: Lab) -> None:
    before = {p: inbound_responses(viz_lab, p) for p in ("web-v1", "web-v2")}
    t0 = time.monotonic()
    code, out, err = mesh(viz_lab, "stat", "deploy", "-n", "emojivoto", "-t", "3s", "-o", "json",
                          "--prometheus", "")  # fmt: skip
    elapsed = time.monotonic() - t0
    after = {p: inbound_responses(viz_lab, p) for p in ("web-v1", "web-v2")}
    assert code == 0, err
    assert "no Prometheus: scraping 8 proxies directly over 3s" in err
    rows = {r["name"]: r for r in json.loads(out)}
    assert set(rows["web-v1"]) == {
        "namespace", "name", "meshed", "success", "rps", "latency_ms_p50", "latency_ms_p95",
        "latency_ms_p99", "tcp_conn", "read_bytes_per_sec", "write_bytes_per_sec", "window_s",
    }  # fmt: skip
    total_rps = 0.0
    for pod in ("web-v1", "web-v2"):
        row = rows[pod]
        ok = after[pod][0] - before[pod][0]
        bad = after[pod][1] - before[pod][1]
        # the command's 3 s window lies inside [before, after]: it cannot count more
        assert row["rps"] * row["window_s"] <= ok + bad + 0.5, (row, ok, bad)
        assert row["rps"] * row["window_s"] >= (ok + bad) * 3 / elapsed * 0.5, (row, ok, bad)
        total_rps += row["rps"]
    assert rows["web-v1"]["success"] < 1.0
    assert LAB_RPS * 0.3 < total_rps < LAB_RPS * 1.5, rows


def test_stat_of_a_service_counts_its_clients_calls(viz_lab: Lab) -> None:
    code, out, err = mesh(viz_lab, "stat", "svc/web", "-n", "emojivoto", "-t", "6s",
                          "--from", "deploy/vote-bot", "--from-namespace", "loadgen")  # fmt: skip
    assert code == 0, err
    [_header, row] = out.splitlines()
    cells = row.split()
    assert cells[:2] == ["web", "-"] and cells[-1] == "-", out
    assert float(cells[2].rstrip("%")) < 100 and float(cells[3].removesuffix("rps")) > 0, out
    code, out, _ = mesh(viz_lab, "stat", "ns", "-o", "wide")
    assert out.split("\n")[0].endswith("READ_BYTES/SEC   WRITE_BYTES/SEC")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["emojivoto"], out


def test_edges_show_the_mtls_calls_with_both_identities(viz_lab: Lab) -> None:
    code, out, err = mesh(viz_lab, "edges", "deploy", "-A", "-o", "wide")
    assert code == 0, err
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == ["SRC", "DST", "SRC_NS", "DST_NS", "CLIENT_ID", "SERVER_ID", "SECURED"]
    edges = {(r[0], r[1]): r for r in lines[1:]}
    proxyless = {(w, s) for w in ("web-v1", "web-v2") for s in ("emoji", "voting")}
    assert set(edges) == {("vote-bot", "web-v1"), ("vote-bot", "web-v2"), *proxyless}, out
    edges = {k: v for k, v in edges.items() if k[0] == "vote-bot"}  # the mTLS identities
    text = viz_lab.metrics("vote-bot")
    for edge in edges.values():
        assert edge[2:4] == ["loadgen", "emojivoto"]
        assert edge[4] == "vote-bot.loadgen.serviceaccount.identity.cluster.local"
        assert edge[5] == "web.emojivoto.serviceaccount.identity.cluster.local"
        assert edge[6] == "√"
        assert (
            f'tls="true",server_id="{edge[5]}",dst_namespace="emojivoto",dst_service="{edge[1]}"'
            in text
        )
    code, out, _ = mesh(viz_lab, "edges", "po/nobody", "-o", "json")
    assert (code, json.loads(out)) == (0, [])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(("stat", "foo/bar"), "error: unknown target kind 'foo' in 'foo/bar'", id="bad-kind"),
        pytest.param(("edges", "deploy/Not_A_Name"), "error: not a valid name", id="bad-name"),
        pytest.param(("stat", "deploy", "-t", "soon"), "error: -t/--window: not a duration", id="bad-window"),
        pytest.param(("stat", "svc/web", "--to", "svc/x"), "error: --to: a Service", id="to-needs-workload"),
    ],
)  # fmt: skip
def test_bad_command_lines_are_one_error_line(
    viz_lab: Lab, argv: tuple[str, ...], message: str
) -> None:
    code, out, err = mesh(viz_lab, *argv)
    assert (code, out) == (2, "")
    assert err.startswith(message) and err.count("\n") == 1, err


def test_an_unreachable_prometheus_or_control_plane_is_one_error_line(viz_lab: Lab) -> None:
    dead = f"127.0.0.1:{dead_port()}"
    code, out, err = mesh(viz_lab, "stat", "deploy", "--prometheus", f"http://{dead}")
    assert (code, out) == (2, "")
    assert err == f"error: prometheus http://{dead}: cannot query: [Errno 111] Connection refused\n"
    out_, err_ = io.StringIO(), io.StringIO()
    code = main(["edges", "deploy", "--control-plane", dead], stdout=out_, stderr=err_)
    assert code == 2 and err_.getvalue().startswith(f"error: control plane {dead}: cannot read")
    assert err_.getvalue().count("\n") == 1


def test_stat_to_a_service_counts_only_the_calls_to_it(viz_lab: Lab) -> None:
    """web-v1's proxyless calls, split by destination: voting has the demo's failing
    VoteDoughnut, emoji fails nothing."""
    rows = {}
    for svc in ("voting", "emoji"):
        code, out, err = mesh(viz_lab, "stat", "deploy/web-v1", "-n", "emojivoto", "-t", "6s",
                              "--to", f"svc/{svc}", "-o", "json")  # fmt: skip
        assert code == 0, err
        [rows[svc]] = json.loads(out)
    assert rows["voting"]["name"] == rows["emoji"]["name"] == "web-v1"
    assert rows["voting"]["rps"] > 0 and rows["emoji"]["rps"] > 0, rows
    assert rows["voting"]["success"] < 1.0 == rows["emoji"]["success"], rows
    code, out, _ = mesh(viz_lab, "stat", "deploy/web-v1", "-n", "emojivoto", "-t", "6s",
                        "--to", "svc/nowhere", "-o", "json")  # fmt: skip
    [nowhere] = json.loads(out)
    assert code == 0 and nowhere["name"] == "web-v1" and nowhere["rps"] is None, out  # `-`
