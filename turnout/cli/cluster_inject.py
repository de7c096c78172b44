"""`mesh inject` and `mesh uninject`: manifests in (files or stdin), manifests out on stdout,
the report on stderr.

```
mesh inject FILE... [--manual]   manifests.read_inputs -> transform -> render_outputs
mesh uninject FILE...            the same with Mode(uninject=True)
mesh serve --injector H:P        start_injector: the webhook, next to the control plane
```

Nothing is printed to stdout unless every input loaded: a half-written stream must not reach
``kubectl apply``. A document that cannot be read is one line naming the file and the
document, exit 2 (`main` prints the `LoadError`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from turnout.cli.errors import UsageError
from turnout.cli.output import EXIT_OK

if TYPE_CHECKING:
    from turnout.cluster.inject.namespaces import NamespaceAnnotations

Stop = Callable[[], Awaitable[None]]


def run_inject(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from turnout.cluster.inject.manifests import Mode
    from turnout.cluster.inject.settings import InjectSettings

    settings = InjectSettings(control_plane_namespace=args.control_plane_namespace)
    if args.image:
        settings = dataclasses.replace(settings, image=args.image)
    if args.trust_domain:
        settings = dataclasses.replace(settings, trust_domain=args.trust_domain)
    return _run(args, Mode(manual=args.manual, settings=settings), out, err)


def run_uninject(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from turnout.cluster.inject.manifests import Mode

    return _run(args, Mode(uninject=True), out, err)


def _run(args: argparse.Namespace, mode: object, out: TextIO, err: TextIO) -> int:
    # Imported here for start-up cost: `mesh --help` must not load the YAML reader.
    from turnout.cluster.inject.manifests import Mode, read_inputs, render_outputs, transform
    from turnout.engine.model.limits import ManifestLimits
    from turnout.engine.model.loader import expand_paths

    assert isinstance(mode, Mode)
    limits = ManifestLimits(max_file_bytes=args.max_file_size)
    files = read_inputs(expand_paths(args.files), limits=limits)
    transformed, report = transform(files, mode)
    out.write(render_outputs(transformed))
    err.write(report.text())
    return EXIT_OK


async def start_injector(
    args: argparse.Namespace, namespaces: NamespaceAnnotations | None, out: TextIO
) -> Stop | None:
    """`mesh serve --injector`: the webhook, started (None without the flag); what it
    writes into pods comes from the environment of the controller's pod (POD_NAMESPACE,
    TURNOUT_PROXY_IMAGE) and from the CA's trust domain."""
    if args.injector is None:
        return None
    # Imported here for start-up cost: `mesh serve` without --injector never loads it.
    from turnout.cluster import names
    from turnout.cluster.inject.namespaces import no_namespaces
    from turnout.cluster.inject.settings import InjectSettings
    from turnout.cluster.inject.webhook import InjectorError, InjectorWebhook
    from turnout.proxy.process import Address

    address = Address.parse(args.injector)
    settings = InjectSettings(
        control_plane_namespace=os.environ.get("POD_NAMESPACE") or names.NAMESPACE,
        image=os.environ.get(names.PROXY_IMAGE_ENV) or names.IMAGE,
        trust_domain=await asyncio.to_thread(_trust_domain, args.identity_dir),
    )
    webhook = InjectorWebhook(
        Path(args.injector_cert_dir),
        settings=settings,
        namespace_annotations=namespaces or no_namespaces,
    )
    try:
        port = await webhook.start(address.host, address.port)
    except InjectorError as exc:
        raise UsageError(f"--injector: {exc}") from None
    print(f"injector listening on {address.host}:{port} (https, {names.INJECTOR_PATH})", file=out)
    return webhook.stop


def _trust_domain(identity_dir: str | None) -> str:
    from turnout.engine.identity.settings import DEFAULT_TRUST_DOMAIN

    if identity_dir is None:
        return DEFAULT_TRUST_DOMAIN
    from turnout.engine.identity.store import load_material

    return load_material(Path(identity_dir)).settings.domain  # run_serve checked the dir
