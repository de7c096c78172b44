"""`mesh identity agent`: a real Certify service on 127.0.0.1, the files the agent writes,
a real TLS handshake between two workloads using only those files, and renewal."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import ssl
import stat
from pathlib import Path

from cryptography import x509

from tests.proxy.identity.kit import API, WEB, identity_service
from turnout.cli.main import main
from turnout.proxy.identity.agent import CA_FILE, CERT_FILE, KEY_FILE, Agent


def serial(out: Path) -> int:
    return x509.load_pem_x509_certificate((out / CERT_FILE).read_bytes()).serial_number


def contexts(server: Path, client: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    srv.load_cert_chain(server / CERT_FILE, server / KEY_FILE)
    srv.load_verify_locations(server / CA_FILE)
    srv.verify_mode = ssl.CERT_REQUIRED
    cli = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cli.load_cert_chain(client / CERT_FILE, client / KEY_FILE)
    cli.load_verify_locations(client / CA_FILE)
    return srv, cli


async def test_the_files_carry_mutual_tls_between_two_workloads(tmp_path: Path) -> None:
    async with identity_service(tmp_path) as ca:
        web, api = tmp_path / "web", tmp_path / "api"
        await Agent(WEB, target=ca.target, token_file=ca.token_file("web"), out=web).once()
        await Agent(API, target=ca.target, token_file=ca.token_file("api"), out=api).once()
    assert stat.S_IMODE((web / KEY_FILE).stat().st_mode) == 0o600
    srv, cli = contexts(api, web)
    seen: list[object] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(writer.get_extra_info("peercert"))
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=srv)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=cli, server_hostname=API
        )
        assert await reader.read() == b"ok"
        writer.close()
        with contextlib.suppress(ssl.SSLError, OSError):
            await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
    # the server saw the client's identity in its certificate
    [peer] = seen
    assert isinstance(peer, dict) and ("DNS", WEB) in peer["subjectAltName"]


async def test_renewal_replaces_the_certificate_and_keeps_the_key(tmp_path: Path) -> None:
    async with identity_service(tmp_path) as ca:
        out = tmp_path / "web"
        agent = Agent(
            WEB,
            target=ca.target,
            token_file=ca.token_file("web"),
            out=out,
            min_refresh_s=0.05,
            max_refresh_s=0.2,
        )
        task = asyncio.create_task(agent.run())
        try:
            for _ in range(200):
                if agent.written >= 1:
                    break
                await asyncio.sleep(0.02)
            first, key = serial(out), (out / KEY_FILE).read_bytes()
            for _ in range(200):
                if agent.written >= 3:
                    break
                await asyncio.sleep(0.02)
            assert agent.written >= 3 and serial(out) != first
            assert (out / KEY_FILE).read_bytes() == key
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def test_the_command_writes_once_and_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    async def setup() -> tuple[str, Path]:
        async with identity_service(tmp_path) as ca:
            token = ca.token_file("web")
            out = tmp_path / "out"
            code = await asyncio.to_thread(
                main,
                [
                    "identity",
                    "agent",
                    "--identity",
                    WEB,
                    "--identity-token-file",
                    str(token),
                    "--addr",
                    ca.target,
                    "--out",
                    str(out),
                    "--once",
                ],
                stdout=io.StringIO(),
                stderr=io.StringIO(),
            )
            assert code == 0
            assert (out / CERT_FILE).exists() and (out / CA_FILE).exists()
            # a token for another service account: Certify refuses, one line, exit 2
            err = io.StringIO()
            code = await asyncio.to_thread(
                main,
                [
                    "identity",
                    "agent",
                    "--identity",
                    API,
                    "--identity-token-file",
                    str(token),
                    "--addr",
                    ca.target,
                    "--out",
                    str(out),
                    "--once",
                ],
                stdout=io.StringIO(),
                stderr=err,
            )
            assert code == 2 and err.getvalue().startswith("error: identity agent: certify")
            assert len(err.getvalue().strip().splitlines()) == 1
            return ca.target, token

    target, token = asyncio.run(setup())
    for argv, want in (
        (["--identity", "web", "--identity-token-file", str(token)], "not an identity name"),
        (["--identity", WEB, "--identity-token-file", str(tmp_path / "nope")], "no such file"),
    ):
        err = io.StringIO()
        code = main(
            ["identity", "agent", *argv, "--addr", target, "--out", str(tmp_path / "o"), "--once"],
            stdout=io.StringIO(),
            stderr=err,
        )
        assert code == 2 and want in err.getvalue(), err.getvalue()


def test_bootstrap_certs_names_the_files_the_agent_keeps(tmp_path: Path) -> None:
    async def agent_files() -> Path:
        async with identity_service(tmp_path) as ca:
            out = tmp_path / "certs"
            await Agent(WEB, target=ca.target, token_file=ca.token_file("web"), out=out).once()
            return out

    out = asyncio.run(agent_files())
    buf = io.StringIO()
    argv = ["bootstrap", "--xds", "127.0.0.1:18000", "-n", "shop", "--workload", "deployment/web"]
    assert main([*argv, "--certs", str(out)], stdout=buf) == 0
    provider = json.loads(buf.getvalue())["certificate_providers"]["turnout"]
    assert provider["plugin_name"] == "file_watcher"
    files = provider["config"]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_cert_chain(files["certificate_file"], files["private_key_file"])
    ctx.load_verify_locations(files["ca_certificate_file"])
    assert files["refresh_interval"] == "60s"
