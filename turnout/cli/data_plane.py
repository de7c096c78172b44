"""`mesh proxy` and `mesh tap`: run a proxy, stream a proxy's live requests.

```
mesh proxy -f FILES   spawn child: compile_for_proxy(files) ─> serialized xDS, policy ─┐
mesh proxy --xds ADDR ─────────────────────────────────── XdsClient ───────────────────┴─> run_proxy
mesh tap --admin ADDR GET /tap?... ─> one line per request (Linkerd's tap format)
```

This module imports no engine code at the top: a proxy process never loads the engine
(pydantic, jsonschema, CEL), which keeps its resident memory to the proxy's own share. With
`-f`, the manifests are compiled in a child process that does.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TextIO

import uvloop

from turnout.cli.errors import UsageError
from turnout.cli.output import EXIT_FAILED, EXIT_OK, EXIT_UNLOADABLE
from turnout.proxy.config import DEFAULT_UPSTREAM_READ_TIMEOUT_MS
from turnout.proxy.errors import ListenError, WorkerError
from turnout.proxy.identity.names import is_identity
from turnout.proxy.process import (
    Address,
    IdentityConfig,
    ProxyConfig,
    SourceSpec,
    TableSource,
    TraceConfig,
    parse_gateway,
    parse_ports,
)
from turnout.proxy.runner import Listening
from turnout.proxy.workers import run_proxy

PolicyItems = tuple[tuple[str, str, dict[str, Any]], ...]
"""Policy resources as (xDS name, type URL, value): `SourceSpec.policy`."""


def compile_for_proxy(
    files: Sequence[str],
    namespace: str,
    gateway: str | None,
    max_file_bytes: int,
) -> tuple[list[bytes], PolicyItems, list[str], bool]:
    """Run in a child process by `mesh proxy -f`: compile and translate the manifests and
    return the serialized xDS resources (listeners, route configs, clusters, assignments, in
    that order, as `type_url\\0bytes`), the policy resources the control plane would serve
    for them, the diagnostics as text, and whether any is an error.
    Input with no object, or a `gateway` (``NS/NAME:PORT``) the manifests have no listener
    for, raises `UsageError` (it pickles back to the parent like the engine's `LoadError`)."""
    # Imported here, in the child only: the proxy process never imports the engine.
    from turnout.adapters.policy import compile_policy
    from turnout.cli.output import compile_manifests
    from turnout.engine.diagnostics import Severity, has_errors
    from turnout.engine.xds import translate
    from turnout.engine.xds.policy import policy_resources

    compiled = compile_manifests(files, verb="proxy", max_file_bytes=max_file_bytes)
    policy = compile_policy(compiled.inputs.resources)
    found = [*compiled.diagnostics, *policy.diagnostics]
    diags = [d for d in found if d.severity is not Severity.INFO]
    table = compiled.result.table
    if gateway is not None and not has_errors(diags) and table.parent(f"gateway/{gateway}") is None:
        known = [
            p.name.removeprefix("gateway/") for p in table.parents if p.name.startswith("gateway/")
        ]
        raise UsageError(
            f"--gateway {gateway}: the manifests have no listener of that Gateway on that port "
            f"(gateways: {', '.join(known) or 'none'})"
        )
    res = translate(table, client_namespace=namespace)
    blobs = [
        f"{kind}\0".encode() + msg.SerializeToString()
        for kind, group in enumerate(
            (res.listeners, res.route_configs, res.clusters, res.load_assignments)
        )
        for msg in group
    ]
    items = policy_resources(policy.table).plain()
    return blobs, items, [str(d) for d in diags], has_errors(diags)


def _identity_config(args: argparse.Namespace) -> IdentityConfig | None:
    """``--identity`` and its two companions, checked (one line for what is wrong)."""
    if args.identity is None:
        if args.identity_token_file or args.identity_addr:
            raise UsageError("--identity-token-file and --identity-addr need --identity NAME")
        return None
    if not is_identity(args.identity):
        raise UsageError(
            f"--identity {args.identity!r}: not an identity name"
            " (<sa>.<ns>.serviceaccount.identity.<domain>)"
        )
    if not args.identity_token_file:
        raise UsageError("--identity needs --identity-token-file FILE (the token proving it)")
    token = Path(args.identity_token_file)
    if not token.is_file():
        raise UsageError(f"--identity-token-file {token}: no such file")
    addr = args.identity_addr or args.xds
    if not addr:
        raise UsageError("--identity needs --identity-addr HOST:PORT (or --xds: the same port)")
    return IdentityConfig(name=args.identity, token_file=str(token), addr=str(Address.parse(addr)))


def _trace_config(args: argparse.Namespace, service: str) -> TraceConfig | None:
    """``--trace-otlp`` and ``--trace-sample``; the workload's name is the service name."""
    if args.trace_otlp is None:
        return None
    rate = 1_000_000 if args.trace_sample is None else args.trace_sample
    return TraceConfig(
        otlp=str(Address.parse(args.trace_otlp)), sample_per_million=rate, service_name=service
    )


def run_proxy_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if bool(args.files) == bool(args.xds):
        raise UsageError("give exactly one of -f MANIFESTS and --xds HOST:PORT")
    if args.xds_protocol and not args.xds:
        raise UsageError("--xds-protocol needs --xds HOST:PORT (-f tables are not xDS)")
    if args.app and not args.inbound:
        raise UsageError("--inbound HOST:PORT and --app HOST:PORT go together")
    if args.inbound and not args.app and not args.transparent:
        raise UsageError(
            "--inbound HOST:PORT and --app HOST:PORT go together (or --transparent: the"
            " app at 127.0.0.1 on each connection's original port)"
        )
    if args.transparent and args.gateway:
        raise UsageError("--transparent is a mesh proxy's; a --gateway proxy is addressed")
    if args.refuse_unknown and not args.transparent:
        raise UsageError("--refuse-unknown needs --transparent")
    if args.gateway and not args.outbound:
        raise UsageError("--gateway serves the Gateway's listener on --outbound HOST:PORT: give it")
    if args.gateway and args.service_listeners:
        raise UsageError("--service-listeners is a mesh proxy's; a --gateway proxy has none")
    identity = _identity_config(args)
    if args.trace_sample is not None and args.trace_otlp is None:
        raise UsageError("--trace-sample needs --trace-otlp HOST:PORT (where the spans go)")
    if args.require_mtls and identity is None:
        raise UsageError("--require-mtls needs --identity NAME (mTLS needs this proxy's identity)")
    kind, _, name = args.workload.partition("/")
    try:
        config = ProxyConfig(
            namespace=args.namespace,
            workload_kind=kind,
            workload_name=name or kind,
            pod=args.pod,
            outbound=Address.parse(args.outbound) if args.outbound else None,
            inbound=Address.parse(args.inbound) if args.inbound else None,
            app=Address.parse(args.app) if args.app else None,
            admin=Address.parse(args.admin) if args.admin else None,
            gateway=parse_gateway(args.gateway) if args.gateway else None,
            workers=args.workers,
            service_listeners=args.service_listeners,
            transparent=args.transparent,
            refuse_unknown=args.refuse_unknown,
            identity=identity,
            require_mtls=args.require_mtls,
            labels=tuple(args.label),
            opaque_ports=parse_ports(args.opaque_ports),
            port_names=tuple(args.port_name),
            probes=tuple(args.probe),
            app_probes=args.app_probes,
            upstream_read_timeout_ms=(
                DEFAULT_UPSTREAM_READ_TIMEOUT_MS
                if args.upstream_read_timeout is None
                else args.upstream_read_timeout or None
            ),
            trace=_trace_config(args, name or kind),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    source: TableSource
    if args.files:
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            blobs, policy, diag_lines, failed = pool.submit(
                compile_for_proxy,
                args.files,
                args.namespace,
                config.gateway,
                args.max_file_size,
            ).result()
        for line in diag_lines:
            print(line, file=err)
        if failed:
            print("error: the manifests do not load cleanly; the proxy did not start", file=err)
            return EXIT_UNLOADABLE
        spec = SourceSpec(blobs=tuple(blobs), policy=policy)
    else:
        # Imported here for memory: grpc (about 10 MB resident) loads only with --xds.
        from turnout.proxy.xds_client import NodeInfo

        node = NodeInfo(
            id=f"{args.namespace}/{args.workload}/{args.pod or 'proxy'}",
            cluster=args.namespace,
            namespace=args.namespace,
            workload=args.workload,
            labels=tuple(args.label),
            pod=args.pod or "",
        )
        spec = SourceSpec(xds=args.xds, node=node, xds_delta=args.xds_protocol != "sotw")
    source = spec.source()

    app = args.app or ("127.0.0.1:<original port>" if args.transparent else "-")

    def started(bound: Listening) -> None:  # after binding: the ports `:0` became
        print(
            f"proxy {args.namespace}/{args.workload}: outbound {bound.outbound or '-'}"
            f"{f' (gateway {config.gateway})' if config.gateway else ''}, "
            f"inbound {bound.inbound or '-'} -> {app}, admin {bound.admin or '-'}"
            f"{', transparent' if args.transparent else ''}",
            file=out,
        )
        out.flush()

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(run_proxy(config, source, spec=spec, on_listening=started))
    except KeyboardInterrupt:
        pass
    except ListenError as exc:
        print(
            f"error: cannot listen on {exc.host}:{exc.port} (--{exc.listener}): {exc.reason}",
            file=err,
        )
        return EXIT_UNLOADABLE
    except WorkerError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_UNLOADABLE
    return EXIT_OK


def run_tap(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`mesh tap`: print a proxy's tap stream (its admin `/tap`), one event per line."""
    # Imported here for memory: urllib.request brings http.client and email (about 1 MB),
    # which a proxy process never needs.
    import urllib.parse
    import urllib.request

    query = urllib.parse.urlencode(
        {
            "format": args.output,
            "method": args.method,
            "authority": args.authority,
            "path": args.path,
            "max_rps": args.max_rps,
            "limit": args.limit,
        }
    )
    url = f"http://{args.admin}/tap?{query}"
    try:
        with urllib.request.urlopen(url, timeout=300) as resp:  # until limit, idle or Ctrl-C
            for line in resp:
                out.write(line.decode("utf-8", errors="replace"))
                out.flush()
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"error: cannot tap {args.admin}: {exc}", file=err)
        return EXIT_FAILED
    return EXIT_OK
