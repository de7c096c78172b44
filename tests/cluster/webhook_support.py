"""What the injector webhook's tests share: certificates for the webhook's Service name, a
pod as a ReplicaSet creates it, AdmissionReviews, an HTTPS client that verifies the webhook
against the CA, and `mesh serve --injector` in a subprocess."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from tests.certs import Authority
from tests.support.serving import lines_until_serving
from turnout.cluster import names

Obj = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
SERVICE_NAME = f"{names.INJECTOR_SERVICE}.{names.NAMESPACE}.svc"
"""What the API server calls the webhook by, and so the name its certificate is for."""
TIMEOUT_S = 20.0


def write_certs(directory: Path, authority: Authority) -> None:
    leaf = authority.leaf(SERVICE_NAME)
    directory.mkdir(exist_ok=True)
    (directory / "tls.crt").write_bytes(leaf.chain_pem)
    (directory / "tls.key").write_bytes(leaf.key_pem)


def mk_pod(ns: str = "shop", *, annotations: Obj | None = None, host_network: bool = False) -> Obj:
    """A pod as a ReplicaSet of Deployment `web` creates it (no name yet, a generateName)."""
    meta: Obj = {
        "generateName": "web-5d4f8c7b9-",
        "namespace": ns,
        "labels": {"app": "web", "pod-template-hash": "5d4f8c7b9"},
        "annotations": {"example.com/owner~team": "a", **(annotations or {})},
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "web-5d4f8c7b9",
                "controller": True,
            }
        ],
    }
    spec: Obj = {
        "serviceAccountName": "web",
        "containers": [{"name": "app", "image": "app:1", "ports": [{"containerPort": 8080}]}],
        "volumes": [{"name": "data", "emptyDir": {}}],
    }
    if host_network:
        spec["hostNetwork"] = True
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def mk_review(obj: Obj, *, kind: str = "Pod", operation: str = "CREATE") -> Obj:
    ns = obj["metadata"].get("namespace", "")
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": kind.lower() + "s"},
            "namespace": ns,
            "operation": operation,
            "object": obj,
        },
    }


class Injector:
    """A client of the webhook that checks the certificate against `ca_pem`."""

    def __init__(self, url: str, ca_pem: bytes) -> None:
        self.url = url
        self.ssl = ssl.create_default_context(cadata=ca_pem.decode())

    async def post(self, body: bytes | Obj) -> tuple[int, Any]:
        kwargs: Obj = {"data": body} if isinstance(body, bytes) else {"json": body}
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.post(
                self.url + names.INJECTOR_PATH, ssl=self.ssl, server_hostname=SERVICE_NAME, **kwargs
            ) as resp,
        ):
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.text()

    async def review(self, obj: Obj, **kw: str) -> tuple[Obj, list[Obj] | None]:
        """The response, and the patch decoded (None: no patch)."""
        review = mk_review(obj, **kw)
        status, answer = await self.post(review)
        assert status == 200, answer
        assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
        response = answer["response"]
        assert response["uid"] == review["request"]["uid"] and response["allowed"] is True
        if "patch" not in response:
            return response, None
        assert response["patchType"] == "JSONPatch"
        return response, json.loads(base64.b64decode(response["patch"]))


async def start_serve(*argv: str) -> tuple[asyncio.subprocess.Process, list[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("POD_NAMESPACE", names.PROXY_IMAGE_ENV)}
    env["PYTHONPATH"] = str(ROOT)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "turnout", "serve", "--xds", "127.0.0.1:0", "--admin", "127.0.0.1:0",
        "--injector", "127.0.0.1:0", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    stderr = proc.stderr
    assert stderr is not None

    async def why() -> str:
        return (await stderr.read()).decode()

    lines = await lines_until_serving(proc, timeout_s=TIMEOUT_S, why=why)
    return proc, lines


async def stop_serve(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        async with asyncio.timeout(TIMEOUT_S):
            assert await proc.wait() == 0


def injector_url(lines: list[str]) -> str:
    (line,) = [x for x in lines if x.startswith("injector listening on ")]
    return "https://" + line.split()[3]
