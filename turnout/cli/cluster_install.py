"""`mesh install [--crds]`, `mesh uninstall [--crds]`: manifests on stdout, notes on stderr.

```
mesh install         values ─> identity (--identity-dir | new) ─> render_install ─> stdout
mesh install --crds  own_crds [- foreign ones with --skip-existing] ─> stdout
mesh install --grafana-json DIR   the Grafana dashboards ─> DIR/turnout-*.json (notes: stderr)
                     list_crds (optional) ─> Gateway API notes ─> stderr
mesh upgrade         values + the cluster's turnout-identity / turnout-injector-tls Secrets
                       ─> install_objects ─> stdout (same trust anchor, same caBundle)
mesh uninstall       the references of what `mesh install` renders (same values) ─> stdout
mesh uninstall --crds  the references of our CRDs
```

stdout is only the manifest (pipe it to ``kubectl apply -f -`` / ``kubectl delete -f -``);
everything said about it goes to stderr as ``note:`` / ``warning:`` lines. A bad values file
or key, an unusable ``--identity-dir``, a cluster `mesh upgrade` cannot read (or without
Turnout's Secrets), or an object the Kubernetes models refuse is one
``error:`` line, exit 2, and nothing on stdout.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO

from turnout.cli.errors import CommandError, UsageError
from turnout.cli.output import EXIT_OK
from turnout.cluster import names
from turnout.cluster.install import crds, grafana, identity, render, values, webhook
from turnout.cluster.install.errors import ClusterUnavailable, InstallError
from turnout.engine.identity.clock import utc_now

Raw = dict[str, Any]


def _values(args: argparse.Namespace) -> values.Values:
    sets = tuple(args.set or ())
    if getattr(args, "image", None):
        sets += (f"image={args.image}",)
    if getattr(args, "grafana", False):
        sets += ("grafana.dashboards=true",)
    return values.build_values(ha=args.ha, files=tuple(args.values or ()), sets=sets)


def _cluster_crds(args: argparse.Namespace) -> tuple[dict[str, Raw] | None, str]:
    if args.ignore_cluster:
        return None, "--ignore-cluster"
    from turnout.cluster.install.cluster import list_crds  # the kubernetes client: only here

    try:
        return list_crds(kubeconfig=args.kubeconfig, context=args.context), ""
    except ClusterUnavailable as exc:
        return None, f"no cluster: {exc}"


def _crd_objects(args: argparse.Namespace, err: TextIO) -> list[Raw]:
    cluster, why_not = _cluster_crds(args)
    if args.skip_existing and cluster is None:
        raise UsageError(f"--skip-existing needs a cluster to compare with ({why_not})")
    objs = crds.own_crds()
    foreign = crds.foreign_crds(cluster) if cluster is not None else []
    if args.skip_existing:
        objs = [o for o in objs if o["metadata"]["name"] not in foreign]
        for name in foreign:
            print(f"note: skipped CRD {name}: the cluster has it, not from Turnout", file=err)
    else:
        for name in foreign:
            print(
                f"warning: CRD {name} exists and was not installed by Turnout: applying"
                " replaces its schema; --skip-existing leaves it alone",
                file=err,
            )
    for line in crds.gateway_api_notes(cluster, why_not):
        print(line, file=err)
    return objs


def _control_plane(args: argparse.Namespace, v: values.Values, err: TextIO) -> list[Raw]:
    if args.identity_dir:
        files = identity.read_identity_dir(Path(args.identity_dir))
        print(f"note: identity from {args.identity_dir} (values identity.* unused)", file=err)
    else:
        files = identity.new_identity(v)
        print(
            "note: a new trust anchor was generated; keep one to re-install without"
            " restarting proxies: mesh identity init --dir DIR, then --identity-dir DIR",
            file=err,
        )
    return render.render_install(v, identity=files, now=utc_now())


def _write_grafana(args: argparse.Namespace, err: TextIO) -> int:
    others = [f for f, on in (("--crds", args.crds), ("--identity-dir", args.identity_dir)) if on]
    if others:
        raise UsageError(f"--grafana-json writes the dashboards only, not with {others[0]}")
    try:
        paths = grafana.write_dashboards(Path(args.grafana_json))
    except InstallError as exc:
        raise CommandError(str(exc)) from None
    for path in paths:
        print(f"note: wrote {path}", file=err)
    print(
        "note: import them in Grafana (Dashboards > New > Import) or point a file provider at"
        " the directory; each has a Prometheus drop-down (docs/grafana.md)",
        file=err,
    )
    return EXIT_OK


def run_install(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.grafana_json:
        return _write_grafana(args, err)
    if not args.crds and (args.skip_existing or args.ignore_cluster):
        flag = "--skip-existing" if args.skip_existing else "--ignore-cluster"
        raise UsageError(f"{flag} goes with --crds (mesh install asks no cluster otherwise)")
    if args.crds and args.identity_dir:
        raise UsageError("--identity-dir is for the control plane, not --crds")
    try:
        v = _values(args)
        objs = (
            render.checked(_crd_objects(args, err)) if args.crds else _control_plane(args, v, err)
        )
    except InstallError as exc:
        raise CommandError(str(exc)) from None
    out.write(render.dump(objs, args.output))
    return EXIT_OK


def run_upgrade(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from turnout.cluster.install.upgrade import render_upgrade  # the kubernetes client

    try:
        v = _values(args)
        objs = render_upgrade(v, kubeconfig=args.kubeconfig, context=args.context)
    except InstallError as exc:
        raise CommandError(str(exc)) from None
    print(
        f"note: trust anchor and injector certificate kept from the cluster's Secrets"
        f" {v.namespace}/{names.IDENTITY_SECRET} and {v.namespace}/{names.INJECTOR_TLS_SECRET}",
        file=err,
    )
    out.write(render.dump(objs, args.output))
    return EXIT_OK


def run_uninstall(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        v = _values(args)
        if args.crds:
            objs = crds.own_crds()
        else:
            placeholder = {name: b"" for name in identity.FILES}
            cert = webhook.ServingCert(ca_crt=b"", tls_crt=b"", tls_key=b"")
            objs = render.install_objects(v, identity=placeholder, cert=cert)
    except InstallError as exc:
        raise CommandError(str(exc)) from None
    out.write(render.dump(render.uninstall_refs(objs), args.output))
    return EXIT_OK
