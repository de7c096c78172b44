"""The emoji and voting gRPC services (grpcio, generic handlers, JSON messages).

```
python -m turnout.demo.services emoji  --port N
python -m turnout.demo.services voting --port N --version v1
   [--identity NAME --identity-token-file F --identity-addr HOST:PORT --certs DIR]
```
With `--identity` the service is a proxyless xDS server (`grpc.server(xds=True)`, xDS server
credentials): an in-process identity agent keeps its certificate in DIR (the files the
bootstrap's `file_watcher` provider reads, `GRPC_XDS_BOOTSTRAP_CONFIG`), and the control
plane's Listener decides mTLS (the PeerAuthentication mode) and RBAC (the policies).
``/emojivoto.v1.EmojiService/ListAll`` answers every emoji, ``FindByShortcode`` one.
``/emojivoto.v1.VotingService/Vote<Name>`` counts a vote (``VoteDoughnut`` always fails with
UNKNOWN), ``Results`` answers the tally of this instance, ``version`` included.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

from turnout.demo import catalog
from turnout.demo.lifecycle import setup_logging
from turnout.grpcmesh.server import MeshAdmin, MeshServerInterceptor
from turnout.proxy.metrics import ProxyMetrics

log = logging.getLogger(__name__)

Context = Any
"""``grpc.ServicerContext`` (grpc has no type stubs here)."""
Method = Callable[[bytes, Context], bytes]


def emoji_handlers() -> dict[str, Method]:
    everything = catalog.encode(
        [{"shortcode": e.shortcode, "unicode": e.unicode} for e in catalog.EMOJI]
    )

    def list_all(request: bytes, context: Context) -> bytes:
        return everything

    def find(request: bytes, context: Context) -> bytes:
        data = catalog.decode(request)
        code = data.get("shortcode", "") if isinstance(data, dict) else ""
        e = catalog.BY_SHORTCODE.get(str(code))
        if e is None:
            context.set_code(grpc.StatusCode.NOT_FOUND)
            context.set_details(f"no emoji {code!r}")
            return b""
        return catalog.encode({"shortcode": e.shortcode, "unicode": e.unicode})

    return {"ListAll": list_all, "FindByShortcode": find}


def voting_handlers(version: str) -> dict[str, Method]:
    tally: Counter[str] = Counter()

    def vote(shortcode: str) -> Method:
        def handler(request: bytes, context: Context) -> bytes:
            if shortcode == catalog.FAILING_VOTE:
                # set_code, not abort: under grpcio 1.85 a grpc.server(xds=True) process
                # dies on a core check (pipe.h "has_value()") once handlers abort calls
                context.set_code(grpc.StatusCode.UNKNOWN)
                context.set_details(f"ERROR: {shortcode} is sold out")
                return b""
            tally[shortcode] += 1
            return catalog.encode({})

        return handler

    def results(request: bytes, context: Context) -> bytes:
        return catalog.encode({"version": version, "votes": dict(tally.most_common())})

    methods: dict[str, Method] = {
        catalog.vote_method(e.shortcode): vote(e.shortcode) for e in catalog.EMOJI
    }
    methods["Results"] = results
    return methods


def serve(
    service: str,
    methods: dict[str, Method],
    *,
    host: str,
    port: int,
    xds: bool = False,
    admin: MeshAdmin | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT; `xds`: as a proxyless xDS server (see the docstring);
    `admin`: count every call in its metrics and tap (`grpcmesh.server`)."""
    handlers: dict[str, Any] = {
        name: grpc.unary_unary_rpc_method_handler(fn) for name, fn in methods.items()
    }
    interceptors = (
        [MeshServerInterceptor(admin, local=(host, port), mtls=xds)] if admin is not None else []
    )
    server = grpc.server(ThreadPoolExecutor(max_workers=16), xds=xds, interceptors=interceptors)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    if xds:
        creds = grpc.xds_server_credentials(grpc.insecure_server_credentials())
        bound = server.add_secure_port(f"{host}:{port}", creds)
    else:
        bound = server.add_insecure_port(f"{host}:{port}")
    server.start()
    log.info("serving %s on %s:%d xds=%s", service, host, bound, xds)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=0.5).wait(2)


def start_agent(args: argparse.Namespace, *, timeout_s: float = 20.0) -> None:
    """The identity agent on a thread of its own; returns once the first certificate is
    written (the xDS server's certificate provider reads the files at start)."""
    from turnout.proxy.identity.agent import CERT_FILE, Agent

    out = Path(args.certs)
    agent = Agent(
        args.identity, target=args.identity_addr, token_file=Path(args.identity_token_file), out=out
    )
    threading.Thread(target=lambda: asyncio.run(agent.run()), name="identity", daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while not (out / CERT_FILE).exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"no certificate from {args.identity_addr} in {timeout_s:.0f}s")
        time.sleep(0.05)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m turnout.demo.services")
    p.add_argument("service", choices=("emoji", "voting"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--version", default="v1")
    p.add_argument(
        "--admin-port", type=int, default=0, help="serve /metrics and /tap here (0 = none)"
    )
    p.add_argument("--workload", default="", help="the Deployment's name, for the metrics")
    p.add_argument("--identity", help="serve as a proxyless xDS server with this identity")
    p.add_argument("--identity-token-file")
    p.add_argument("--identity-addr")
    p.add_argument("--certs", help="where the identity agent keeps the certificate files")
    args = p.parse_args(argv)
    setup_logging(f"{args.service}-{args.version}")
    xds = args.identity is not None
    if xds:
        start_agent(args)
    admin = None
    if args.admin_port:
        name = args.workload or args.service
        metrics = ProxyMetrics(
            namespace=catalog.NAMESPACE, workload_name=name, pod=f"{name}-{os.getpid()}"
        )
        admin = MeshAdmin(metrics, args.host, args.admin_port)
    if args.service == "emoji":
        serve(
            catalog.EMOJI_SERVICE,
            emoji_handlers(),
            host=args.host,
            port=args.port,
            xds=xds,
            admin=admin,
        )
    else:
        methods = voting_handlers(args.version)
        serve(catalog.VOTING_SERVICE, methods, host=args.host, port=args.port, xds=xds, admin=admin)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
