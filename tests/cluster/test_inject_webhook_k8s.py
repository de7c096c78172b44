"""`mesh serve --kubernetes --injector`: the webhook is sent only the pod, and reads its
namespace's `turnout.dev/inject` from the Kubernetes source's latest snapshot (the fake API
server of tests/engine/sources, reached through a kubeconfig)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml

from tests.certs import Authority
from tests.cluster.webhook_support import (
    Injector,
    injector_url,
    mk_pod,
    start_serve,
    stop_serve,
    write_certs,
)
from tests.engine.sources.k8s_fake import FakeApiServer, ServedKind
from turnout.cluster import names
from turnout.engine.sources.k8s import WATCHED_KINDS

SERVED = [ServedKind(k.group, k.version, k.plural, k.kind, k.namespaced) for k in WATCHED_KINDS]


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": server}}],
                "users": [{"name": "test", "user": {}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "test"}}],
                "current-context": "fake",
            }
        )
    )
    return path


def mk_namespace(name: str, inject: str) -> dict[str, Any]:
    meta = {"name": name, "annotations": {names.INJECT_ANNOTATION: inject}}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


async def until_patched(client: Injector, want: bool) -> None:
    async with asyncio.timeout(10):
        while ((await client.review(mk_pod()))[1] is not None) != want:
            await asyncio.sleep(0.05)


async def test_the_namespace_annotation_comes_from_the_source(tmp_path: Path) -> None:
    ca = Authority()
    write_certs(tmp_path / "certs", ca)
    async with FakeApiServer(SERVED) as fake:
        fake.apply(mk_namespace("shop", "enabled"))
        config = kubeconfig(tmp_path / "kubeconfig", fake.url)
        proc, lines = await start_serve(
            "--kubernetes", "--kubeconfig", str(config),
            "--injector-cert-dir", str(tmp_path / "certs"),
        )  # fmt: skip
        try:
            client = Injector(injector_url(lines), ca.ca_pem)
            await until_patched(client, True)
            fake.apply(mk_namespace("shop", "disabled"))
            await until_patched(client, False)
        finally:
            await stop_serve(proc)
