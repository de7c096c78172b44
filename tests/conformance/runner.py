"""Run conformance folders on the wire: echo backends, real proxies, upstream's requests.

```
run_folders(folders, parallel=2) ─ per folder, at most `parallel` at once:
  echo per Service (every port) ─> manifests + EndpointSlices (127.0.0.1:echo) + TLS Secrets
  ─> one `mesh proxy` per via (Gateway port / mesh client namespace), started together
  ─> each upstream test: its cases in order, each request sent through its proxy and checked
     (checks.py) ─> Outcome PASS / FAIL / SKIP (feature not claimed) / XFAIL / XPASS
  ─> proxies stopped, echoes stopped
```

Cases of one folder run one after another (mirrors and attempts are counted as deltas at
the echoes); folders are independent, so they run side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import ssl
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

import aiohttp
import yaml
from cryptography import x509
from multidict import CIMultiDict
from yarl import URL

from tests.certs import Authority, secret_yaml
from tests.conformance.cases import (
    Case,
    Folder,
    Request,
    Sample,
    UpstreamTest,
    Via,
    load_folder,
)
from tests.conformance.checks import check_answer, check_echo, check_sample
from tests.conformance.echo import Echo
from tests.conformance.features import PARTIAL, SUPPORTED
from tests.conformance.proxies import RunningProxy, start_proxy

REQUEST_SECONDS = 10
MIRROR_WAIT_SECONDS = 3
FOLDER_SECONDS = 120
SAMPLE_ROUNDS = 3


@dataclass
class Outcome:
    folder: str
    name: str
    features: tuple[str, ...]
    outcome: str
    """PASS, FAIL, SKIP, XFAIL (a known bug, failing as it must) or XPASS (strict: a failure)."""
    details: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: CIMultiDict[str]
    body: bytes
    echo: Mapping[str, object] | None
    """The echo backend's JSON when one answered, else None."""
    ms: int
    serial: int | None
    """The serial of the certificate the TLS handshake presented (None: plain HTTP)."""


@dataclass
class Lab:
    """One folder's running world."""

    folder: Folder
    echoes: dict[str, Echo]
    proxies: dict[str, RunningProxy]
    session: aiohttp.ClientSession
    ca: Authority
    serials: dict[str, int]
    """TLS Secret ``NS/NAME`` -> its leaf's serial."""

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.ca.ca_pem.decode())


async def start_echoes(manifests: str) -> dict[str, Echo]:
    echoes: dict[str, Echo] = {}
    for doc in yaml.safe_load_all(manifests):
        if isinstance(doc, dict) and doc.get("kind") == "Service":
            meta, spec = doc["metadata"], doc.get("spec", {})
            ports = tuple(int(p["port"]) for p in spec.get("ports", []))
            echo = Echo(meta.get("namespace", "default"), meta["name"], ports)
            echoes[echo.name] = await echo.start()
    return echoes


def endpoint_slices(manifests: str, echoes: Mapping[str, Echo]) -> list[str]:
    """An EndpointSlice per Service: its ports on the echo's 127.0.0.1 sockets, by name."""
    out = []
    for doc in yaml.safe_load_all(manifests):
        if not (isinstance(doc, dict) and doc.get("kind") == "Service"):
            continue
        meta = doc["metadata"]
        echo = echoes[f"{meta.get('namespace', 'default')}/{meta['name']}"]
        ports = []
        for p in doc.get("spec", {}).get("ports", []):
            one: dict[str, object] = {"port": echo.listening[int(p["port"])], "protocol": "TCP"}
            if p.get("name"):
                one["name"] = p["name"]
            ports.append(one)
        out.append(
            json.dumps(
                {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "name": f"{echo.service}-echo",
                        "namespace": echo.namespace,
                        "labels": {"kubernetes.io/service-name": echo.service},
                    },
                    "addressType": "IPv4",
                    "ports": ports,
                    "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
                }
            )
        )
    return out


_NETWORKS = itertools.cycle(range(100, 250))
"""Second octets of the 127.0.0.0/8 networks mesh proxies' Services get (one per proxy)."""


def with_cluster_ips(manifests: str, network: int) -> tuple[str, dict[str, str]]:
    """`manifests` with a cluster IP ``127.NETWORK.0.N`` for every Service that has none,
    and Service ``NS/NAME`` -> its cluster IP."""
    docs = list(yaml.safe_load_all(manifests))
    addresses: dict[str, str] = {}
    for doc in docs:
        if not (isinstance(doc, dict) and doc.get("kind") == "Service"):
            continue
        meta, spec = doc["metadata"], doc.setdefault("spec", {})
        key = f"{meta.get('namespace', 'default')}/{meta['name']}"
        if not spec.get("clusterIP"):
            spec["clusterIP"] = f"127.{network}.0.{len(addresses) + 1}"
        addresses[key] = spec["clusterIP"]
    return yaml.safe_dump_all([d for d in docs if d is not None]), addresses


def address_of(proxy: RunningProxy, via: Via) -> str:
    """Where a request for `via` through `proxy` goes: a mesh Service's address (the
    destination), or the Gateway proxy's port."""
    if via.kind == "Service":
        return f"{proxy.addresses[f'{via.namespace}/{via.name}']}:{via.port}"
    return f"127.0.0.1:{proxy.outbound}"


async def send(lab: Lab, proxy: RunningProxy, req: Request, via: Via) -> Answer:
    """One request for `via` through `proxy`, as a client of the Gateway / mesh sends it."""
    scheme = "https" if req.https else "http"
    url = URL(f"{scheme}://{address_of(proxy, via)}{req.target}", encoded=True)
    headers = [("Host", req.host), *req.headers]
    started = time.monotonic()
    if not req.https:
        return await _exchange(lab.session, req.method, url, headers, started)
    sni = req.sni or req.host.rsplit(":", 1)[0]
    return await _tls_exchange(lab, proxy.outbound, req, sni, started)


async def _exchange(
    session: aiohttp.ClientSession,
    method: str,
    url: URL,
    headers: Sequence[tuple[str, str]],
    started: float,
) -> Answer:
    async with session.request(
        method,
        url,
        headers=list(headers),
        allow_redirects=False,
        timeout=aiohttp.ClientTimeout(total=REQUEST_SECONDS),
    ) as resp:
        body = await resp.read()
        return _answer(resp.status, CIMultiDict(resp.headers), body, started, None)


async def _tls_exchange(lab: Lab, port: int, req: Request, sni: str, started: float) -> Answer:
    """One HTTPS request on its own connection (``Connection: close``), so that the handshake
    is this request's: SNI `sni`, the certificate verified against the run's CA."""
    async with asyncio.timeout(REQUEST_SECONDS):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=lab.tls_context(), server_hostname=sni
        )
        try:
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            head = [f"{req.method} {req.target} HTTP/1.1", f"Host: {req.host}", "Connection: close"]
            head += [f"{k}: {v}" for k, v in req.headers]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            await writer.drain()
            raw = await reader.read(-1)
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
    top, _, body = raw.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.add(name.strip(), value.strip())
    if "content-length" in headers:
        body = body[: int(headers["content-length"])]
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    serial = x509.load_der_x509_certificate(der).serial_number
    return _answer(int(lines[0].split()[1]), headers, body, started, serial)


def _dechunk(data: bytes) -> bytes:
    """A chunked body (the connection closed after it) as its bytes; trailers dropped."""
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return bytes(out)


def _answer(
    status: int, headers: CIMultiDict[str], body: bytes, started: float, serial: int | None
) -> Answer:
    echo = None
    if headers.get("x-echo-service"):
        echo = cast(Mapping[str, object], json.loads(body))
    ms = int((time.monotonic() - started) * 1000)
    return Answer(status, headers, body, echo, ms, serial)


async def run_case(lab: Lab, case: Case) -> list[str]:
    """What went wrong for one case (empty: it holds)."""
    proxy = lab.proxies[case.via.key]
    if case.request.websocket:
        return await _check_websocket(lab, proxy, case.request, case.via)
    if case.expect.sample is not None:
        # Shares are random: like upstream, a distribution that misses is sampled again
        # (a zero-weight backend answering fails every round, so it still fails the case).
        for _ in range(SAMPLE_ROUNDS):
            problems = await _sample(lab, proxy, case, case.expect.sample)
            if not problems:
                break
        return problems
    before = {name: len(e.seen) for name, e in lab.echoes.items()}
    answer = await send(lab, proxy, case.request, case.via)
    problems = check_answer(case.expect, answer, lab.serials)
    if case.expect.mirrors:
        problems += await _check_mirrors(lab, case, before)
    for name, n in case.expect.attempts.items():
        got = len(lab.echoes[name].seen) - before[name]
        if got != n:
            problems.append(f"attempts at {name}: want {n}, got {got}")
    return problems


WS_TEXT = "Websocket Support!"
WS_BINARY = bytes(range(1, 8))


async def _check_websocket(lab: Lab, proxy: RunningProxy, req: Request, via: Via) -> list[str]:
    """Upstream's WebSocket check: a text and a binary message come back unchanged."""
    url = URL(f"http://{address_of(proxy, via)}{req.target}", encoded=True)
    try:
        async with lab.session.ws_connect(
            url, headers={"Host": req.host}, timeout=aiohttp.ClientWSTimeout(ws_close=5)
        ) as ws:
            await ws.send_str(WS_TEXT)
            text = await ws.receive(timeout=REQUEST_SECONDS)
            await ws.send_bytes(WS_BINARY)
            binary = await ws.receive(timeout=REQUEST_SECONDS)
    except aiohttp.WSServerHandshakeError as exc:
        return [f"websocket handshake refused: {exc.status} {exc.message}"]
    problems = []
    if text.data != WS_TEXT:
        problems.append(f"websocket text reply {text.data!r}, want {WS_TEXT!r}")
    if binary.data != WS_BINARY:
        problems.append(f"websocket binary reply {binary.data!r}, want {WS_BINARY!r}")
    return problems


async def _sample(lab: Lab, proxy: RunningProxy, case: Case, sample: Sample) -> list[str]:
    """Send `sample.requests` copies of the case's request, 8 at a time; what differs."""
    mirrored = {name: len(lab.echoes[name].seen) for name in sample.mirrors}
    counts: dict[str, int] = {}
    wrong: list[str] = []
    pending = iter(range(sample.requests))

    async def worker() -> None:
        for _ in pending:
            a = await send(lab, proxy, case.request, case.via)
            who = f"{a.echo['namespace']}/{a.echo['service']}" if a.echo else f"status/{a.status}"
            counts[who] = counts.get(who, 0) + 1
            if a.echo is not None and sample.backend_header is not None:
                seen = cast(Mapping[str, list[str]], a.echo["headers"])
                if seen.get(sample.backend_header.lower()) != [a.echo["service"]]:
                    wrong.append(
                        f"{who} saw {sample.backend_header}: {seen.get(sample.backend_header.lower())}"
                    )

    async with asyncio.TaskGroup() as tg:
        for _ in range(8):
            tg.create_task(worker())
    copies = {name: await _settled(lab.echoes[name]) - n for name, n in mirrored.items()}
    problems = check_sample(sample, counts, copies)
    if wrong:
        problems.append(
            f"sample: {len(wrong)} requests with the wrong backend header, e.g. {wrong[0]}"
        )
    return problems


async def _settled(echo: Echo) -> int:
    """How many requests `echo` has received once mirrored copies stop arriving."""
    deadline = time.monotonic() + MIRROR_WAIT_SECONDS
    seen = -1
    while len(echo.seen) != seen and time.monotonic() < deadline:
        seen = len(echo.seen)
        await asyncio.sleep(0.2)
    return len(echo.seen)


async def _check_mirrors(lab: Lab, case: Case, before: Mapping[str, int]) -> list[str]:
    problems = []
    deadline = time.monotonic() + MIRROR_WAIT_SECONDS
    for name in case.expect.mirrors:
        echo = lab.echoes[name]
        while len(echo.seen) - before[name] < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        copies = echo.seen[before[name] :]
        if len(copies) != 1:
            problems.append(f"mirror {name}: want 1 copy of the request, got {len(copies)}")
            continue
        # the copy is the request as the primary got it (filters before the mirror applied)
        want = replace(case.expect, backend=None, path=case.expect.path or case.request.target)
        problems += [f"mirror {name}: {p}" for p in check_echo(want, copies[0])]
    return problems


async def run_test(lab: Lab, test: UpstreamTest) -> Outcome:
    result = Outcome(lab.folder.name, test.name, test.features, "PASS")
    started = time.monotonic()
    if _unclaimed(test):
        return _skipped(lab.folder, test)
    for case in test.cases:
        try:
            problems = await run_case(lab, case)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            problems = [f"request failed: {type(exc).__name__}: {exc}"]
        result.details += [f"{case.name}: {p}" for p in problems]
    result.seconds = time.monotonic() - started
    if test.xfail is not None:
        result.outcome = "XFAIL" if result.details else "XPASS"
        if not result.details:
            result.details = [f"expected to fail ({test.xfail}) but passed"]
    elif result.details:
        result.outcome = "FAIL"
    return result


def _unclaimed(test: UpstreamTest) -> list[str]:
    return [f for f in test.features if f not in SUPPORTED and f not in PARTIAL]


def _skipped(folder: Folder, test: UpstreamTest) -> Outcome:
    why = f"feature(s) not claimed by Turnout: {', '.join(_unclaimed(test))}"
    return Outcome(folder.name, test.name, test.features, "SKIP", [why])


async def run_folder(folder: Folder, tmp: Path) -> list[Outcome]:
    if all(_unclaimed(t) for t in folder.tests):  # nothing to send: start nothing
        return [_skipped(folder, t) for t in folder.tests]
    echoes = await start_echoes(folder.manifests)
    proxies: dict[str, RunningProxy] = {}
    ca = Authority()
    try:
        docs = [folder.manifests, *endpoint_slices(folder.manifests, echoes)]
        serials = {}
        for s in folder.secrets:
            leaf = ca.leaf(*s.hosts)
            docs.append(secret_yaml(s.namespace, s.name, leaf))
            serials[f"{s.namespace}/{s.name}"] = leaf.serial
        text = "\n---\n".join(docs)

        async def start(i: int, key: str) -> None:
            via = next(v for v in folder.vias if v.key == key)
            manifests = tmp / f"manifests-{i}.yaml"
            addresses: dict[str, str] = {}
            if via.kind == "Service":
                mesh, addresses = with_cluster_ips(text, next(_NETWORKS))
                manifests.write_text(mesh)
            else:
                manifests.write_text(text)
            proxies[key] = await start_proxy(via, manifests, tmp / f"proxy-{i}.log", addresses)

        async with asyncio.TaskGroup() as tg:
            for i, via in enumerate(folder.vias):
                tg.create_task(start(i, via.key))
        async with aiohttp.ClientSession() as session:
            lab = Lab(folder, echoes, proxies, session, ca, serials)
            return [await run_test(lab, t) for t in folder.tests]
    finally:
        for p in proxies.values():
            await p.stop()
        for e in echoes.values():
            await e.stop()


async def _run_one(path: Path, gate: asyncio.Semaphore) -> list[Outcome]:
    async with gate:
        folder = load_folder(path)
        with tempfile.TemporaryDirectory(prefix=f"conformance-{path.name}-") as tmp:
            try:
                async with asyncio.timeout(FOLDER_SECONDS):
                    return await run_folder(folder, Path(tmp))
            except TimeoutError:
                why = f"the folder did not finish in {FOLDER_SECONDS}s"
            except Exception as exc:  # a folder that cannot start fails its tests, not the run
                why = _describe(exc)
        return [
            Outcome(folder.name, t.name, t.features, "FAIL", [f"setup: {why}"])
            for t in folder.tests
        ]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


async def run_folders(paths: Sequence[Path], *, parallel: int = 2) -> list[Outcome]:
    """Every upstream test of `paths`, in folder order."""
    gate = asyncio.Semaphore(parallel)
    per_folder = await asyncio.gather(*(_run_one(p, gate) for p in paths))
    return [r for results in per_folder for r in results]
