"""`mesh proxy` start-up as users meet it: a port someone else holds is one line and exit 2
(no traceback, with or without ``--workers``), and a port given as ``:0`` is printed as the
port actually bound, which then serves."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import bounded, start_cli_proxy, wait_admin_ready
from tests.proxy.e2e.manifests import smoke_manifests

LINE = re.compile(
    r"proxy shop/deployment/client: outbound 127\.0\.0\.1:(\d+), "
    r"inbound (?:127\.0\.0\.1:(\d+)|-) -> \S+, admin 127\.0\.0\.1:(\d+)"
)


@contextmanager
def held_port() -> Iterator[int]:
    """A port on 127.0.0.1 that this test listens on (no SO_REUSEPORT) while it runs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


async def run_to_exit(*args: str) -> tuple[int | None, str, str]:
    proc = await start_cli_proxy(*args)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize(
    ("workers", "flag"),
    [("1", "--outbound"), ("1", "--inbound"), ("1", "--admin"), ("2", "--outbound")],
)
@bounded(40)
async def test_a_port_in_use_is_one_line_naming_address_and_flag_and_exit_2(
    lab: Lab, tmp_path: Path, flag: str, workers: str
) -> None:
    """Every listener's flag; with ``--workers 2`` one of them (the parent binds every port
    the same way before it starts a worker: what differs is that no worker is left behind)."""
    manifests = await smoke_manifests(lab, tmp_path)
    ports = {"--outbound": ":0", "--inbound": ":0", "--admin": ":0"}
    with held_port() as port:
        ports[flag] = f"127.0.0.1:{port}"
        code, out, err = await run_to_exit(
            *("-f", str(manifests), "--namespace", "shop", "--workers", workers),
            *(a for pair in ports.items() for a in pair),
            *("--app", "127.0.0.1:9"),
        )
    assert (code, out) == (2, "")
    assert err == f"error: cannot listen on 127.0.0.1:{port} ({flag}): address already in use\n"


@pytest.mark.parametrize("workers", ["1", "2"])
@bounded(40)
async def test_ports_given_as_0_are_printed_as_bound_and_serve(
    lab: Lab, tmp_path: Path, workers: str
) -> None:
    manifests = await smoke_manifests(lab, tmp_path)
    app = await lab.backend("app")
    proc = await start_cli_proxy(
        *("-f", str(manifests), "--namespace", "shop", "--workload", "deployment/client"),
        *("--outbound", ":0", "--inbound", ":0", "--admin", ":0", "--workers", workers),
        *("--app", f"127.0.0.1:{app.port}"),
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=30)).decode()
        m = LINE.fullmatch(line.strip())
        assert m, line
        outbound, inbound, admin = (int(g) for g in m.groups())
        assert 0 not in (outbound, inbound, admin)
        await wait_admin_ready(admin)  # every worker has its table (the parent's /ready)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            url = f"http://127.0.0.1:{outbound}/v2/x"
            async with session.get(url, headers={"Host": "web.shop"}) as resp:
                assert (resp.status, resp.headers["x-backend"]) == (200, "v2")
            async with session.get(f"http://127.0.0.1:{inbound}/echo") as resp:
                assert (resp.status, resp.headers["x-backend"]) == (200, "app")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=15)
    assert proc.returncode == 0, err.decode()
