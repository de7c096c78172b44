"""The kubelet's probes of a STRICT app port, made by the proxy (probe rewriting): with
PeerAuthentication STRICT a plaintext GET of the inbound port is reset, and the admin
port's ``/app-health/<container>/<kind>`` makes the original probe against the app and
answers the app's own status (503 when the app is down or late, 404 for no such probe)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.proxy.e2e.backends import Backend
from tests.proxy.e2e.harness import bounded, dead_port, start_cli_proxy, wait_admin_ready
from tests.proxy.identity.kit import API, identity_service
from tests.proxy.identity.test_inbound_authz import NS, STRICT, Lab, open_lab, server_policy
from tests.proxy.identity.test_mtls_e2e import service
from turnout.cli.main import build_parser, main
from turnout.proxy.app_probes import AppProbe, parse_app_probes


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    """The seed's lab, STRICT on the api pod, its proxy given the app's probes."""
    down = closed_port()

    def probes(app_port: int) -> dict[str, Any]:
        return {
            "app_probes": (
                ("api/livez", AppProbe(port=app_port, path="/live?deep=1")),
                ("api/readyz", AppProbe(port=app_port, path="/status/503")),
                ("api/startupz", AppProbe(port=app_port, path="/status/500")),
                (
                    "headers/readyz",
                    AppProbe(port=app_port, path="/hdr", headers=(("X-Probe", "kubelet"),)),
                ),
                ("slow/readyz", AppProbe(port=app_port, path="/delay/2000", timeout_s=0.3)),
                ("down/livez", AppProbe(port=down, path="/live")),
            )
        }

    async with open_lab(tmp_path, lambda port: server_policy(port) + STRICT, probes) as lab:
        yield lab


async def admin_get(lab: Lab, path: str) -> tuple[int, str]:
    """What the kubelet does after the rewrite: a plaintext GET of the admin port."""
    assert lab.server.admin is not None
    port = lab.server.admin.addresses[0][1]
    async with lab.session.get(f"http://127.0.0.1:{port}{path}") as resp:
        return resp.status, await resp.text()


async def plaintext_is_reset(port: int) -> bool:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET /live HTTP/1.1\r\nhost: 10.0.0.7:8080\r\n\r\n")
    try:
        await w.drain()
        return await r.read() == b""
    except ConnectionError:
        return True
    finally:
        w.close()


@bounded(30)
async def test_a_strict_port_refuses_the_kubelet_and_the_admin_port_probes_the_app(
    lab: Lab,
) -> None:
    assert await plaintext_is_reset(lab.inbound)
    hits = lab.app.hits["/live"]
    assert await admin_get(lab, "/app-health/api/livez") == (200, "app answered 200\n")
    assert lab.app.hits["/live"] == hits + 1  # the app itself answered
    assert lab.app.seen[-1]["path"] == "/live?deep=1"
    assert await lab.via(lab.ingress) == 200  # mTLS from the mesh still reaches the app


@bounded(30)
async def test_the_apps_failing_status_is_the_probes_status(lab: Lab) -> None:
    assert (await admin_get(lab, "/app-health/api/readyz"))[0] == 503
    assert lab.app.hits["/status/503"] == 1
    assert (await admin_get(lab, "/app-health/api/startupz"))[0] == 500
    assert lab.app.hits["/status/500"] == 1


@bounded(30)
async def test_the_probes_headers_reach_the_app(lab: Lab) -> None:
    assert (await admin_get(lab, "/app-health/headers/readyz"))[0] == 200
    headers = lab.app.seen[-1]["headers"]
    assert isinstance(headers, dict)
    assert headers["X-Probe"] == "kubelet"
    assert headers["User-Agent"].startswith("kube-probe/")


@bounded(30)
async def test_an_app_down_or_late_is_503_and_an_unknown_probe_404(lab: Lab) -> None:
    status, text = await admin_get(lab, "/app-health/down/livez")
    assert status == 503 and "probe failed" in text
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await admin_get(lab, "/app-health/slow/readyz") == (503, "no answer within 0.3s\n")
    assert loop.time() - started < 1.5  # the probe's timeout, not the app's 2 s
    assert (await admin_get(lab, "/app-health/api/nope"))[0] == 404
    assert (await admin_get(lab, "/app-health/other/livez"))[0] == 404
    assert (await admin_get(lab, "/ready"))[0] == 200  # the proxy's own probes unchanged


def test_the_flag_is_the_injectors_json() -> None:
    text = (
        '{"web/readyz": {"port": 8080, "path": "/ready", "scheme": "HTTPS",'
        ' "httpHeaders": [{"name": "X-A", "value": "b"}], "timeoutSeconds": 3}}'
    )
    args = build_parser().parse_args(["proxy", "--xds", "127.0.0.1:1", "--app-probes", text])
    assert args.app_probes == parse_app_probes(text)
    assert args.app_probes == (
        (
            "web/readyz",
            AppProbe(
                port=8080, path="/ready", scheme="HTTPS", headers=(("X-A", "b"),), timeout_s=3.0
            ),
        ),
    )


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("[]", "want an object"),
        ('{"web": {"port": 80}}', "want CONTAINER/livez|readyz|startupz"),
        ('{"web/livez": {"port": 0}}', "port must be 1-65535"),
        ('{"web/livez": {"port": 80, "path": "x"}}', "path must start with /"),
        ('{"web/livez": {"port": 80, "scheme": "TCP"}}', "scheme must be HTTP or HTTPS"),
        ("{", "not JSON"),
    ],
)
def test_a_bad_app_probes_flag_is_one_line_and_exit_2(value: str, says: str) -> None:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(
            ["proxy", "--xds", "127.0.0.1:1", "--outbound", ":0", "--app-probes", value],
            stdout=io.StringIO(),
            stderr=err,
        )
    assert code == 2
    assert says in err.getvalue() and err.getvalue().count("\n") == 1


@pytest.mark.slow
@bounded(60)
async def test_a_mesh_proxy_process_answers_the_rewritten_probes(tmp_path: Path) -> None:
    """`mesh proxy -f` as a process, STRICT in its manifests (``-f`` enforces the policy
    the control plane would serve), `--app-probes` as the injector writes it (JSON): a
    plaintext GET of the app port is reset, the probes reach the app over loopback and
    answer its status, 503 once it is stopped."""
    async with identity_service(tmp_path) as ca:
        app = await Backend("api").start()
        inbound, admin = dead_port(), dead_port()
        manifests = tmp_path / "mesh.yaml"
        manifests.write_text(
            service("api", inbound, API) + "\n---\n" + server_policy(app.port) + STRICT
        )
        probes = {
            "api/readyz": {
                "port": app.port,
                "path": "/ready",
                "scheme": "HTTP",
                "timeoutSeconds": 1,
            },
            "api/livez": {"port": app.port, "path": "/status/500", "scheme": "HTTP"},
        }
        proc = await start_cli_proxy(
            "-f", str(manifests), "--namespace", NS, "--workload", "deployment/api",
            "--label", "app=api", "--identity-addr", ca.target,
            "--inbound", f"127.0.0.1:{inbound}", "--app", f"127.0.0.1:{app.port}",
            "--admin", f"127.0.0.1:{admin}",
            "--identity", API, "--identity-token-file", str(ca.token_file("api")),
            "--app-probes", json.dumps(probes),
        )  # fmt: skip
        try:
            await wait_admin_ready(admin)
            assert await plaintext_is_reset(inbound)
            assert app.total == 0
            async with aiohttp.ClientSession() as session:

                async def get(path: str) -> int:
                    async with session.get(f"http://127.0.0.1:{admin}{path}") as resp:
                        return resp.status

                assert await get("/app-health/api/readyz") == 200
                assert await get("/app-health/api/livez") == 500
                assert app.hits["/ready"] == 1
                await app.stop()
                assert await get("/app-health/api/readyz") == 503
        finally:
            if proc.returncode is None:
                proc.terminate()
            _, err = await proc.communicate()
            await app.stop()
        assert b"Traceback" not in err, err.decode()
