"""`mesh check`'s requests to the API server: JSON objects, access reviews, proxied GETs.

```
ClusterApi.get(path) / post(path, body) ──thread──> kubernetes ApiClient ──> JSON | ApiError
ClusterApi.proxy_get(path) ─────────────────────────────────────────────────> (status, text)
   /api/v1/namespaces/NS/services/[https:]NAME:PORT/proxy/PATH   (the API server forwards:
   /api/v1/namespaces/NS/pods/NAME:PORT/proxy/PATH               it does not verify a
                                                                 service's certificate)
ClusterApi.can(verb, group, resource, namespace) ──> SelfSubjectAccessReview: (allowed, reason)
```

The kubernetes client is synchronous: every call runs in a thread, with a deadline. Client
and transport errors become `ApiError` here, once (status 0 = no answer). No retries: a check
reports what it sees now, and `--wait` runs the whole check again. The client comes from the
kubeconfig (or in-cluster) as the Kubernetes source loads it
(`engine.sources.k8s.api.api_client_from_environment`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Iterator, Sequence
from typing import Any, cast

import urllib3
from kubernetes import client as k8s_client  # type: ignore[import-untyped, unused-ignore]

from turnout.engine.sources.k8s.api import raw_call

Raw = dict[str, Any]

TEXT_MAX = 200
"""Foreign bodies in messages are cut to this many characters."""

SSAR_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


class ApiError(Exception):
    """The API server answered with an error status, or not at all (`status` 0).

    Outside the `MeshError` tree on purpose: none leaves `turnout.cluster.check`, each one
    becomes a × line of the report."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return functools.partial(type(self), status=self.status), (self.message,)


@contextlib.contextmanager
def _mapped(what: str) -> Iterator[None]:
    try:
        yield
    except k8s_client.ApiException as exc:
        raise ApiError(f"{what}: {_text(exc.body)}", status=int(exc.status or 0)) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise ApiError(f"{what}: {type(exc).__name__}: {exc}", status=0) from exc


def _text(body: object) -> str:
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    text = str(body or "").strip()
    with contextlib.suppress(ValueError, AttributeError):
        text = str(json.loads(text).get("message") or text)
    return text[:TEXT_MAX]


class ClusterApi:
    """Requests of one `mesh check` run (see the module docstring)."""

    def __init__(self, api_client: Any, *, timeout_s: float) -> None:
        self._api = api_client
        self._timeout_s = timeout_s

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._api.close()

    def _send(
        self, method: str, path: str, query: Sequence[tuple[str, str]], body: Raw | None
    ) -> tuple[int, bytes]:
        with _mapped(f"{method} {path}"):
            resp = raw_call(
                self._api, method, path, query, body,
                timeout=self._timeout_s, accept="application/json, */*",
            )  # fmt: skip
            return int(resp.status), bytes(resp.data)

    async def _call(
        self, method: str, path: str, query: Sequence[tuple[str, str]] = (), body: Raw | None = None
    ) -> tuple[int, bytes]:
        try:
            async with asyncio.timeout(self._timeout_s + 1):
                return await asyncio.to_thread(self._send, method, path, query, body)
        except TimeoutError:
            raise ApiError(
                f"{method} {path}: no answer in {self._timeout_s:g}s", status=0
            ) from None

    async def _json(
        self, method: str, path: str, query: Sequence[tuple[str, str]] = (), body: Raw | None = None
    ) -> Raw:
        status, data = await self._call(method, path, query, body)
        if not 200 <= status < 300:
            raise ApiError(f"{method} {path}: {_text(data)}", status=status)
        try:
            return cast(Raw, json.loads(data))
        except ValueError:
            raise ApiError(f"{method} {path}: the answer is not JSON", status=status) from None

    async def get(self, path: str, query: Sequence[tuple[str, str]] = ()) -> Raw:
        return await self._json("GET", path, query)

    async def get_or_none(self, path: str) -> Raw | None:
        """The object at `path`; None when the server answers 404."""
        try:
            return await self.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def post(self, path: str, body: Raw) -> Raw:
        return await self._json("POST", path, body=body)

    async def proxy_get(self, path: str) -> tuple[int, str]:
        """A GET through the API server's proxy: the backend's status and body, whatever they are."""
        status, data = await self._call("GET", path)
        return status, data.decode("utf-8", errors="replace")

    async def can(
        self, verb: str, group: str, resource: str, *, namespace: str | None = None
    ) -> tuple[bool, str]:
        """Whether the caller may `verb` `resource` (a SelfSubjectAccessReview), and why not."""
        attrs: Raw = {"verb": verb, "group": group, "resource": resource}
        if namespace:
            attrs["namespace"] = namespace
        review: Raw = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attrs},
        }
        status = (await self.post(SSAR_PATH, review)).get("status") or {}
        return bool(status.get("allowed")), str(status.get("reason") or "")


def answer(status: int, body: str) -> str:
    """A failed probe in one line: ``503 no endpoints available ...`` (the message of an API
    server `Status` body, else the body's start), or only the reason when nothing answered."""
    text = _text(body)
    return text if status == 0 else f"{status} {text}".rstrip()


def service_proxy(namespace: str, name: str, port: int, path: str, *, https: bool = False) -> str:
    """The API server's proxy path of `path` on a Service's port."""
    scheme = "https:" if https else ""
    return f"/api/v1/namespaces/{namespace}/services/{scheme}{name}:{port}/proxy{path}"


def pod_proxy(namespace: str, name: str, port: int, path: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{name}:{port}/proxy{path}"
