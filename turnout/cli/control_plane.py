"""`mesh serve` and `mesh bootstrap`: run the control plane, print a gRPC client's bootstrap.

```
mesh serve --dir DIR       DirectorySource ──┐                        AdsServer (--xds)
mesh serve --kubernetes    KubernetesSource ─┴─> engine.plane.ControlPlane ──publish──┘
                                                 admin (--admin): /ready /live /metrics
                                                 /debug/table /debug/diagnostics
mesh serve --identity-dir DIR   + IdentityService (Certify) on the --xds port; tokens are
                                join tokens, or TokenReviews with --kubernetes
mesh serve --kubernetes --leader-elect   + LeaderElector on the Lease turnout-controller
                                (--lease-namespace, else $POD_NAMESPACE, else turnout; as
                                --pod-name, else $POD_NAME, else the host name): every
                                replica serves xDS, only the holder writes status
mesh serve --injector H:P  + the injector webhook (cli.cluster_inject.start_injector)
mesh serve --prometheus-sd FILE   + TargetsFile: FILE lists the proxies' admin ports (file_sd)
mesh serve --prometheus [H:P]     + a `prometheus` child scraping them and the admin port,
                                config and TSDB in a temp dir removed when it stops
mesh serve --prometheus-url URL  + names a Prometheus that already scrapes them (the cluster's)
mesh serve --dashboard [H:P]      + the web dashboard on this loop (cli.dashboard.start),
                                reading this admin port like `mesh dashboard` does
mesh bootstrap             bootstrap_config(xds, namespace, workload) ─> JSON on stdout
```

`serve` binds the xDS port, then the admin port (each `:0` prints the port it got), then
starts the source; a port already in use is one line naming its flag (exit 2). It runs
until SIGINT or SIGTERM and stops every part it started, in reverse order.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO, TypeVar

from turnout.cli.cluster_inject import start_injector
from turnout.cli.errors import UsageError
from turnout.cli.output import EXIT_OK
from turnout.cluster import names
from turnout.engine.errors import ControlPlaneError, MeshError
from turnout.engine.model.limits import ManifestLimits
from turnout.engine.pipeline import IncrementalCompiler
from turnout.engine.plane import ControlPlane
from turnout.engine.render import dump_json
from turnout.engine.server import AdsServer, bootstrap_config
from turnout.engine.server.admin import admin_app, start_admin
from turnout.engine.server.settings import DEFAULT_HEAP_SETTLE_MS, ServerSettings
from turnout.engine.sources import DirectorySource
from turnout.proxy.process import Address

log = logging.getLogger(__name__)

T = TypeVar("T")


def run_bootstrap(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    config = bootstrap_config(
        xds=args.xds,
        namespace=args.namespace,
        workload=args.workload,
        node_id=args.node_id,
        certs=str(Path(args.certs).absolute()) if args.certs else None,
        labels=dict(args.label or ()),
        refresh_interval_s=args.cert_refresh_interval,
    )
    out.write(dump_json(config))
    return EXIT_OK


def run_serve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`mesh serve`: a source + the control plane + ADS + admin until SIGINT/SIGTERM."""
    xds = _address("--xds", args.xds)
    admin = _address("--admin", args.admin)
    if args.dir is not None and not Path(args.dir).is_dir():  # before anything listens
        raise UsageError(f"--dir: not a directory: {args.dir}")
    if args.identity_dir is not None:
        _check_identity_dir(Path(args.identity_dir))
    _lease_settings(args)  # its flags are checked before anything listens
    if args.injector is not None and args.injector_cert_dir is None:
        raise UsageError("--injector needs --injector-cert-dir (tls.crt, tls.key)")
    if args.prometheus is not None:
        _address("--prometheus", args.prometheus)
    if args.prometheus_url is not None:
        if args.prometheus is not None:
            raise UsageError(
                "--prometheus-url names a Prometheus; --prometheus starts one: not both"
            )
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", args.prometheus_url):
            raise UsageError(f"--prometheus-url: not an http(s) URL: {args.prometheus_url!r}")
    if args.dashboard is not None:
        _address("--dashboard", args.dashboard)
    if args.prometheus_sd is not None and not Path(args.prometheus_sd).parent.is_dir():
        raise UsageError(f"--prometheus-sd: not a directory: {Path(args.prometheus_sd).parent}")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args, xds=xds, admin=admin, out=out))
    return EXIT_OK


def _check_identity_dir(directory: Path) -> None:
    # Imported here for start-up cost: `mesh serve` without identity never loads the CA.
    from turnout.engine.identity.errors import StoreError
    from turnout.engine.identity.store import load_material

    try:
        load_material(directory)
    except StoreError as exc:
        raise UsageError(f"--identity-dir: {exc}") from None


def _lease_settings(args: argparse.Namespace) -> Any:
    """The `LeaseSettings` of `--leader-elect` (None without it); bad flags: UsageError."""
    if not getattr(args, "leader_elect", False):
        return None
    if not args.kubernetes:
        raise UsageError("--leader-elect: needs --kubernetes (the Lease is on the API server)")
    # Imported here for start-up cost: it loads the kubernetes client.
    from turnout.engine.sources.k8s.lease import LeaseSettings

    settings = LeaseSettings(
        namespace=args.lease_namespace or os.environ.get("POD_NAMESPACE") or names.NAMESPACE,
        name=names.LEASE,
        identity=args.pod_name or os.environ.get("POD_NAME") or socket.gethostname(),
        lease_duration_s=args.lease_duration,
        renew_deadline_s=args.lease_renew_deadline,
        retry_period_s=args.lease_retry_period,
    )
    problem = settings.check()
    if problem is not None:
        raise UsageError(f"--leader-elect: {problem}")
    return settings


def _address(flag: str, text: str) -> Address:
    try:
        return Address.parse(text)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None


async def _bind(flag: str, start: Awaitable[T]) -> T:
    try:
        return await start
    except ControlPlaneError as exc:
        raise UsageError(f"{flag}: {exc}") from None


Stop = Callable[[], Awaitable[None]]


async def _kubernetes_client(args: argparse.Namespace) -> Any:
    # Imported here for start-up cost: the kubernetes client takes half a second to
    # import and `mesh serve --dir` never needs it.
    from turnout.engine.sources.k8s import api_client_from_environment

    try:
        return await asyncio.to_thread(
            api_client_from_environment, kubeconfig=args.kubeconfig, context=args.context
        )
    except MeshError as exc:
        raise UsageError(f"--kubernetes: {exc}") from None


async def _start_source(
    args: argparse.Namespace, plane: ControlPlane, api: Any, elector: Any
) -> tuple[str, Stop, Any]:
    """The source `args` name, started: what `serve` says it serves, how to stop it, and
    where the injector reads namespaces' annotations (`cluster.inject.namespaces`)."""
    if args.kubernetes:
        from turnout.engine.sources.k8s import start_kubernetes_source

        k8s = await start_kubernetes_source(plane, api, leader=elector)
        namespaces = None
        if args.injector is not None:
            from turnout.cluster.inject.namespaces import snapshot_namespaces

            namespaces = snapshot_namespaces(
                lambda: None if k8s.latest is None else k8s.latest.resources
            )
        if elector is None:
            return "the Kubernetes API", k8s.stop, namespaces
        await elector.start()

        async def stop() -> None:
            await k8s.stop()  # no status write after this: then the Lease is released
            await elector.stop()

        what = f"the Kubernetes API, leader election on lease {elector.lease} as {elector.identity}"
        return what, stop, namespaces
    limits = ManifestLimits(max_file_bytes=args.max_file_size)
    source = DirectorySource(
        Path(args.dir), plane=plane, compiler=IncrementalCompiler(limits=limits)
    )
    try:
        await source.start()
    except MeshError as exc:
        raise UsageError(f"--dir: {exc}") from None
    namespaces = None
    if args.injector is not None:
        from turnout.cluster.inject.namespaces import directory_namespaces

        namespaces = directory_namespaces(source.directory, limits=limits)
    return str(source.directory), source.stop, namespaces


async def _identity(args: argparse.Namespace, api: Any) -> tuple[list[Any], str, Stop | None]:
    """The identity service's gRPC handler(s), what `serve` says of it, how to stop it."""
    if args.identity_dir is None:
        return [], "", None
    from turnout.engine.identity.service import IdentityService
    from turnout.engine.identity.store import AuthorityFiles
    from turnout.engine.identity.tokens import JoinTokenVerifier, TokenVerifier
    from turnout.engine.server.certify import certify_handler

    files = AuthorityFiles(Path(args.identity_dir))
    authority = await asyncio.to_thread(files.refresh)  # run_serve checked it already
    if authority is None:
        raise UsageError(f"--identity-dir: {files.error}")
    verifier: TokenVerifier
    stop: Stop | None = None
    if api is not None:
        from turnout.engine.sources.k8s.tokenreview import TokenReviewVerifier

        reviews = TokenReviewVerifier(api)
        verifier, tokens = reviews, "TokenReview"

        async def stop_reviews() -> None:
            reviews.close()

        stop = stop_reviews
    else:
        verifier, tokens = JoinTokenVerifier(files.token_key), "join tokens"
    what = (
        f"identity service on the xds port: trust domain {authority.settings.domain},"
        f" issuer sha256={authority.issuer_sha256[:16]}, anchors={len(authority.anchors)},"
        f" tokens: {tokens}"
    )
    return [certify_handler(IdentityService(files, verifier))], what, stop


async def _serve(args: argparse.Namespace, *, xds: Address, admin: Address, out: TextIO) -> None:
    api = await _kubernetes_client(args) if args.kubernetes else None
    handlers, identity, stop_identity = await _identity(args, api)
    server = AdsServer(
        handlers=handlers, settings=ServerSettings(heap_settle_ms=DEFAULT_HEAP_SETTLE_MS)
    )
    plane = ControlPlane(publish=server.publish)
    elector = None
    if (lease := _lease_settings(args)) is not None:
        from turnout.engine.sources.k8s.lease import LeaderElector

        elector = LeaderElector(api, lease)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = None
    stop_source: Stop | None = None
    stop_injector: Stop | None = None
    stop_prometheus: Stop | None = None
    stop_dashboard: Stop | None = None
    try:
        port = await _bind("--xds", server.start(xds.host, xds.port))
        print(f"xds listening on {xds.host}:{port}", file=out)
        if identity:
            print(identity, file=out)
        # the Prometheus URL: --prometheus-url's, or once `_start_prometheus` has one
        started: list[str] = [args.prometheus_url.rstrip("/")] if args.prometheus_url else []
        app = admin_app(
            plane, server, leadership=elector, prometheus=lambda: started[0] if started else None
        )
        runner, admin_port = await _bind("--admin", start_admin(app, admin.host, admin.port))
        print(f"admin listening on {admin.host}:{admin_port}", file=out)
        stop_prometheus = await _start_prometheus(
            args, server, control_plane=_reachable(admin.host, admin_port), out=out, url=started
        )
        if args.dashboard is not None:
            from turnout.cli import dashboard

            board = _address("--dashboard", args.dashboard)
            stop_dashboard = await dashboard.start(
                _reachable(admin.host, admin_port), board.host, board.port, out
            )
        what, stop_source, namespaces = await _start_source(args, plane, api, elector)
        stop_injector = await start_injector(args, namespaces, out)
        rejected = len(plane.status.rejected)
        more = f" rejected={rejected}" if rejected else ""
        print(f"serving {what} version={server.version}{more}", file=out)
        out.flush()
        await stop.wait()
        log.info("shutting down")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if stop_injector is not None:
            await stop_injector()
        if stop_source is not None:
            await stop_source()
        if stop_dashboard is not None:
            await stop_dashboard()
        if stop_prometheus is not None:
            await stop_prometheus()
        if runner is not None:
            await runner.cleanup()
        await server.stop()
        if stop_identity is not None:
            await stop_identity()


def _reachable(host: str, port: int) -> str:
    """``HOST:PORT`` to connect to a port bound on `host` (an unspecified host: loopback)."""
    if host in ("", "0.0.0.0"):
        return f"127.0.0.1:{port}"
    if host in ("::", "[::]"):
        return f"[::1]:{port}"
    return f"{host}:{port}"


def _free_port(host: str) -> int:
    """A port free on `host` now (bound, then released), for ``--prometheus HOST:0``:
    Prometheus reports no port it picked itself."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host.strip("[]"), 0))
        return int(s.getsockname()[1])


async def _start_prometheus(
    args: argparse.Namespace,
    server: AdsServer,
    *,
    control_plane: str,
    out: TextIO,
    url: list[str],
) -> Stop | None:
    """`--prometheus-sd` and `--prometheus`: the targets file following `server`'s streams
    and the Prometheus scraping it (its URL appended to `url`); how to stop both (None:
    neither flag)."""
    if args.prometheus_sd is None and args.prometheus is None:
        return None
    from turnout.engine.server.prometheus import PrometheusSettings, start_prometheus
    from turnout.engine.server.targets import TargetsFile

    workdir = None
    if args.prometheus is not None:
        workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="turnout-prometheus-"))
    if args.prometheus_sd is not None:
        flag, path = "--prometheus-sd", Path(args.prometheus_sd)
    else:
        assert workdir is not None
        flag, path = "--prometheus", workdir / "targets.json"
    targets = TargetsFile(path, server.status)
    server.on_streams_changed = targets.changed

    async def stop() -> None:
        server.on_streams_changed = None
        if prometheus is not None:
            await prometheus.stop()
        await targets.stop()
        if workdir is not None:
            await asyncio.to_thread(shutil.rmtree, workdir, True)

    prometheus = None
    try:
        try:
            await targets.start()
        except OSError as exc:
            raise UsageError(
                f"{flag}: cannot write {targets.path}: {exc.strerror or exc}"
            ) from None
        print(f"prometheus targets in {targets.path}", file=out)
        if workdir is not None:
            listen = _address("--prometheus", args.prometheus)
            if listen.port == 0:
                listen = Address(host=listen.host, port=_free_port(listen.host))
            settings = PrometheusSettings(listen=str(listen))
            try:
                prometheus = await start_prometheus(
                    workdir,
                    targets_file=targets.path,
                    control_plane=control_plane,
                    settings=settings,
                )
            except ControlPlaneError as exc:
                raise UsageError(f"--prometheus: {exc}") from None
            print(f"prometheus listening on {prometheus.url} pid={prometheus.pid}", file=out)
            url.append(prometheus.url)
    except BaseException:
        await stop()
        raise
    return stop
