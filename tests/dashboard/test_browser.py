"""The dashboard in a real headless Chromium (Debian's chromium + chromium-driver, Selenium),
against the demo's mesh (`mesh serve --dashboard`, as `make demo` starts it).

Each view is opened, its numbers checked against the proxies' own /metrics, a live value
watched while extra traffic flows, and a screenshot saved to build/screenshots/ (with
timings.json: each view's time to first render from the Performance API).
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from turnout.cli.demo import DEMO_MANIFESTS
from turnout.demo.orchestrate import EXAMPLES, HOST, WEB_HOST, Demo
from turnout.viz import stats

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "screenshots"
CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
TIMEOUT_S = 30.0
T = TypeVar("T")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or DRIVER is None,
        reason="no chromium/chromedriver (`make tools` installs Debian's chromium and"
        " chromium-driver)",
    ),
]


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    d = Demo(examples=EXAMPLES / DEMO_MANIFESTS, rps=20)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(d.start())
        yield d
    finally:
        loop.run_until_complete(d.stop())
        loop.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        opts.add_argument(a)
    opts.add_argument("--disable-dev-shm-usage")
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=opts)
    driver.set_page_load_timeout(TIMEOUT_S)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


TIMINGS: dict[str, float] = {}


def base(demo: Demo) -> str:
    return f"http://{HOST}:{demo.ports.dashboard}"


def until(what: str, fn: Callable[[], T | None], timeout: float = TIMEOUT_S) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def open_view(browser: Any, url: str, name: str) -> None:
    browser.get(url)
    nav = browser.execute_script(
        "const n = performance.getEntriesByType('navigation')[0];"
        " return [n.responseEnd, n.domContentLoadedEventEnd];"
    )
    TIMINGS[name] = round(float(nav[1]), 1)
    (SHOTS / "timings.json").write_text(json.dumps(TIMINGS, indent=2) + "\n")


def shot(browser: Any, name: str) -> None:
    browser.save_screenshot(str(SHOTS / f"{name}.png"))


def cells(browser: Any, css: str) -> list[str] | None:
    """The cells of the first row `css` selects, read in one script (htmx swaps rows)."""
    got = browser.execute_script(
        "const r = document.querySelector(arguments[0]);"
        " return r && Array.from(r.querySelectorAll('td'), td => td.textContent);",
        css,
    )
    return list(got) if got else None


def rate(text: str) -> float | None:
    m = re.fullmatch(r"([\d.]+)(%|rps)", text)
    return float(m.group(1)) if m else None


def metrics_inbound(urls: list[str], seconds: float = 3.0) -> list[stats.RouteStats]:
    """What the proxies' own /metrics say over `seconds` (inbound responses)."""

    def fetch(url: str) -> str:
        with urllib.request.urlopen(url, timeout=5) as r:
            return str(r.read().decode())

    before, t0 = [fetch(u) for u in urls], time.monotonic()
    time.sleep(seconds)  # the measuring window, not a wait for a condition
    after = [fetch(u) for u in urls]
    took = time.monotonic() - t0
    return [stats.inbound_deltas(b, a, seconds=took) for b, a in zip(before, after, strict=True)]


def test_namespaces_view_shows_the_proxies_numbers_and_failing_in_red(
    demo: Demo, browser: Any
) -> None:

    open_view(browser, base(demo) + "/", "namespaces")
    row = 'tr[data-workload="emojivoto/deployment/web-v1"]'
    got = until("web-v1's numbers", lambda: (c := cells(browser, row)) and rate(c[4]) and c)
    (want,) = metrics_inbound([demo.inbound_urls["web-v1"]])
    # MESHED: every client the control plane holds streams of for web-v1 (its inbound proxy
    # and the proxyless gRPC app, whose channels are one client), by pod and admin
    with urllib.request.urlopen(f"http://{HOST}:{demo.ports.serve_admin}/debug/proxies") as r:
        streams = json.load(r)["proxies"]
    n = len({(p["pod"], p["admin"]) for p in streams if p["workload"] == "deployment/web-v1"})
    assert n >= 2 and got[2] == f"{n}/{n}", (got, streams)
    rps = rate(got[4])
    assert rps is not None and abs(rps - want.rps) <= max(3.0, 0.5 * want.rps), (got, want.rps)
    ns = cells(browser, 'tr[data-namespace="emojivoto"]')
    assert ns is not None and ns[1] == "5/5", ns  # emoji, voting-v1/v2, web-v1/v2
    # web-v2 answers the doughnut votes 500 (the demo's failing vote): red
    v2 = 'tr[data-workload="emojivoto/deployment/web-v2"]'
    js = (
        "const td = document.querySelector(arguments[0]);"
        " return td && [td.textContent, getComputedStyle(td).color];"
    )
    text, color = until(
        "web-v2 failing", lambda: browser.execute_script(js, v2 + ".failing td.failing")
    )
    sr = rate(text)
    assert sr is not None and sr < 95, text
    assert color == "rgb(192, 57, 43)", color
    # and web-v2's proxy did answer failures (its counters, since it started)
    with urllib.request.urlopen(demo.inbound_urls["web-v2"], timeout=5) as r:
        exposition = r.read().decode()
    failures = [
        s.value
        for s in stats.parse_text(exposition)
        if s.name == "response_total" and s.labels.get("classification") == "failure"
    ]
    assert sum(failures) > 0, exposition
    cmds = browser.execute_script(
        "return Array.from(document.querySelectorAll('.cmd code'), c => c.dataset.command);"
    )
    assert cmds == ["mesh stat ns", "mesh stat deploy -A"], cmds
    shot(browser, "namespaces")


def _burst(demo: Demo, stop: threading.Event) -> None:
    """Extra requests to web through the vote-bot's outbound proxy, as fast as they go."""
    while not stop.is_set():
        req = urllib.request.Request(
            f"http://{HOST}:{demo.ports.outbound}/", headers={"Host": WEB_HOST}
        )
        try:
            with urllib.request.urlopen(req, timeout=2) as r:
                r.read()
        except OSError:
            pass


def test_workload_view_follows_traffic_live_without_reloading(demo: Demo, browser: Any) -> None:
    open_view(browser, base(demo) + "/workloads/emojivoto/deployment/web-v1", "workload")
    row = "table.inbound tr[data-workload]"
    first = until("web-v1's rps", lambda: (c := cells(browser, row)) and rate(c[3]))
    browser.execute_script("window.__same_page = 1;")
    stop = threading.Event()
    workers = [threading.Thread(target=_burst, args=(demo, stop)) for _ in range(2)]
    for w in workers:
        w.start()
    try:
        higher = until(
            "web-v1's rps to rise with the extra traffic",
            lambda: (
                (r := rate((cells(browser, row) or ["", "", "", "-"])[3])) and r > first + 10 and r
            ),
        )
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert browser.execute_script("return window.__same_page;") == 1  # htmx, not a reload
    assert higher > first + 10
    # the edges, as `mesh edges` prints them (the command under the table), SECURED included
    js = (
        "return Array.from(document.querySelectorAll('table.edges tr[data-edge]'),"
        " r => Array.from(r.querySelectorAll('td'), td => td.textContent).slice(1).join(' '));"
    )
    argv = ["edges", "deploy/web-v1", "-n", "emojivoto"]

    def same_edges() -> list[str] | None:
        shown = sorted(browser.execute_script(js))
        cli = subprocess.run(
            [sys.executable, "-m", "turnout", *argv, "--control-plane",
             f"{HOST}:{demo.ports.serve_admin}"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        rows = sorted(" ".join(line.split()[:5]) for line in cli.stdout.splitlines()[1:])
        return shown if shown and shown == rows else None

    if demo.prometheus_url is None:  # no `prometheus` on PATH: the view says where to look
        assert "runs no Prometheus" in browser.page_source
    else:
        edges = until("the edges view to match mesh edges", same_edges)
        assert any(e.endswith("√") for e in edges), edges
    shot(browser, "workload")


def test_routes_view_and_explain_form_answer_what_mesh_routes_explain_does(
    demo: Demo, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    open_view(browser, base(demo) + "/routes", "routes")
    api = 'tr[data-route="service/emojivoto/web:80 httproute/emojivoto/web/rule/1"]'
    got = until(
        "the /api route's live numbers", lambda: (c := cells(browser, api)) and rate(c[4]) and c
    )
    assert got[2].startswith("PathPrefix /api"), got
    form = browser.find_element(By.ID, "explain")
    form.find_element(By.NAME, "via").send_keys("service/emojivoto/web:80")
    url = form.find_element(By.NAME, "url")
    url.clear()
    url.send_keys("http://web.emojivoto/api/list")
    form.find_element(By.TAG_NAME, "button").click()
    pre = until("the explanation", lambda: browser.find_elements(By.CSS_SELECTOR, "#explained pre"))
    text = pre[0].text
    argv = browser.find_element(By.CSS_SELECTOR, "#explained .cmd code").get_attribute(
        "data-command"
    )
    cli = subprocess.run(
        [sys.executable, "-m", "turnout", *shlex.split(argv)[1:]],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cli.returncode == 0, cli.stderr
    assert text.strip() == cli.stdout.strip()
    shot(browser, "routes")


def test_rejected_view_shows_a_broken_manifest(demo: Demo, browser: Any) -> None:

    bad = demo.manifests / "zz-broken.yaml"
    bad.write_text(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
        "metadata: {name: broken, namespace: emojivoto}\nspec: {rules: [{matches: [{path: {type: Nope}}]}]}\n"
    )
    open_view(browser, base(demo) + "/rejected", "rejected")
    text = until(
        "the rejected file",
        lambda: browser.execute_script(
            "const li = document.querySelector('li.rejected.failing'); return li && li.textContent;"
        ),
    )
    assert "zz-broken.yaml" in text, text
    shot(browser, "rejected")


def test_mesh_dashboard_serves_the_same_views_standalone(demo: Demo, browser: Any) -> None:
    """`mesh dashboard --control-plane` (no --dashboard on serve needed): its URL on stdout."""
    cp = f"{HOST}:{demo.ports.serve_admin}"
    argv = [sys.executable, "-m", "turnout", "dashboard", "--control-plane", cp, "--port", "0"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            m = re.fullmatch(r"dashboard listening on (http://127\.0\.0\.1:\d+/)\n", line)
            assert m, (line, proc.poll())
            browser.get(m.group(1) + "routes")
            row = 'tr[data-route="service/emojivoto/web:80 httproute/emojivoto/web/rule/1"]'
            got = until("the /api route in the standalone dashboard", lambda: cells(browser, row))
            assert got[2].startswith("PathPrefix /api"), got
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err


TAP_JS = (
    "return Array.from(document.querySelectorAll(arguments[0]),"
    " r => Array.from(r.querySelectorAll('td'), td => td.textContent));"
)


def _mesh_tap(cp: str, argv: list[str], out: list[str]) -> None:
    cli = subprocess.run(
        [sys.executable, "-m", "turnout", *argv, "--limit", "60", "--control-plane", cp],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    out.extend(cli.stdout.splitlines() or [f"exit {cli.returncode}: {cli.stderr}"])


def _cli_requests(lines: list[str]) -> set[tuple[str, str, str]]:
    """(direction, authority, path) of `mesh tap`'s req lines."""
    got = set()
    for line in lines:
        f = dict(w.split("=", 1) for w in line.split()[1:] if "=" in w)
        if line.startswith("req ") and ":path" in f:
            direction = "inbound" if f["proxy"] == "in" else "outbound"
            got.add((direction, f[":authority"], f[":path"]))
    return got


def test_workload_view_taps_live_requests_and_top_counts_grow(demo: Demo, browser: Any) -> None:
    """The live tap table and top (the control plane's fan-in, `mesh tap`'s stream)."""
    open_view(browser, base(demo) + "/workloads/emojivoto/deployment/web-v1", "workload-tap")
    rows = until("tap rows", lambda: (r := browser.execute_script(TAP_JS, "tr[data-tap]")) and r)
    argv = ["tap", "deploy/web-v1", "-n", "emojivoto"]
    cli_lines: list[str] = []
    cp = f"{HOST}:{demo.ports.serve_admin}"
    reader = threading.Thread(target=_mesh_tap, args=(cp, argv, cli_lines))
    reader.start()
    shown: set[tuple[str, str, str]] = set()

    def top_count() -> int:
        for r in browser.execute_script(TAP_JS, "tr[data-tap]"):
            shown.add((r[0], r[5], r[6]))  # direction, authority, path
        return sum(int(r[4]) for r in browser.execute_script(TAP_JS, "tr[data-top]"))

    first = until("top's counts", top_count)
    until("top's counts to grow", lambda: top_count() > first)
    reader.join(timeout=30)
    cli = _cli_requests(cli_lines)
    assert cli, cli_lines
    # the demo's real traffic: vote-bot -> web (inbound), web -> emoji/voting gRPC (outbound)
    for direction, authority, path in shown:
        assert direction in ("inbound", "outbound"), shown
        assert authority.split(".")[0] in ("web", "emoji", "voting"), shown
        assert path == "/" or path.startswith(("/api/", "/emojivoto.v1.")), shown
    # what `mesh tap` printed for the same workload: the same (direction, authority) set,
    # and rows in common
    until(
        "the tap table to show mesh tap's authorities",
        lambda: top_count() and {(d, a) for d, a, _ in cli} <= {(d, a) for d, a, _ in shown},
        timeout=10,
    )
    assert shown & cli, (shown, cli)
    cmds = browser.execute_script(
        "return Array.from(document.querySelectorAll('#tap .cmd code'), c => c.dataset.command);"
    )
    assert cmds == ["mesh tap deploy/web-v1 -n emojivoto", "mesh top deploy/web-v1 -n emojivoto"]
    assert rows and len(browser.execute_script(TAP_JS, "tr[data-tap]")) <= 25
    browser.execute_script("document.getElementById('tap').scrollIntoView();")
    shot(browser, "workload-tap")
