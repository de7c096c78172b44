"""What the fake API server (`k8s_fake.FakeApiServer`) adds for the cluster commands.

`ClusterFakeApiServer` answers, before handing every other request to the fake:

- ``GET /version``: `version` (a real server's `version.Info`: major, minor, gitVersion).
- ``POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`` (201): `status.allowed`
  for the review's `resourceAttributes` by `access_rules` (`rbac.Rule`s; None = everything
  allowed, as for cluster-admin), with `status.reason` as RBAC's authorizer words it.
  Every user may create one, as on a real server (system:basic-user).
- The API server's proxy: ``/api/v1/namespaces/NS/services/[https:]NAME:PORT/proxy/PATH``
  and ``.../pods/NAME:PORT/proxy/PATH``, forwarded to the address a test registered with
  `forward()` (a real admin port, a real HTTPS server); the backend's status and body come
  back as they are. As the real server does, an HTTPS backend's certificate is not verified;
  a name nobody registered answers 503 ("no endpoints available for service"), a backend
  that refuses the connection 503 ("error trying to reach service").

`CLUSTER_KINDS` serves what `mesh install` creates and `mesh check` reads as ordinary kinds
(Namespaces, Pods, Services, Secrets, ServiceAccounts, Deployments, PodDisruptionBudgets,
ClusterRoles and their bindings, CRDs, MutatingWebhookConfigurations, Leases, the route
kinds). Nothing here edits the base class: `_handle` is overridden and falls through to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from tests.engine.sources.k8s_fake import FakeApiServer, ServedKind, _status
from turnout.engine.sources.k8s.rbac import Rule, allowed

SSAR = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"

CLUSTER_KINDS = (
    ServedKind("", "v1", "namespaces", "Namespace", namespaced=False),
    ServedKind("", "v1", "pods", "Pod"),
    ServedKind("", "v1", "services", "Service"),
    ServedKind("", "v1", "secrets", "Secret"),
    ServedKind("", "v1", "serviceaccounts", "ServiceAccount"),
    ServedKind("apps", "v1", "deployments", "Deployment"),
    ServedKind("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget"),
    ServedKind("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
    ServedKind(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        namespaced=False,
    ),
    ServedKind(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
    ),
    ServedKind(
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        namespaced=False,
    ),
    ServedKind("coordination.k8s.io", "v1", "leases", "Lease"),
    ServedKind("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute"),
    ServedKind("gateway.networking.k8s.io", "v1", "grpcroutes", "GRPCRoute"),
)


class ClusterFakeApiServer(FakeApiServer):
    """See the module docstring."""

    def __init__(self, kinds: Iterable[ServedKind] = CLUSTER_KINDS, **kwargs: Any) -> None:
        super().__init__(kinds, **kwargs)
        self.version: dict[str, str] = {"major": "1", "minor": "36", "gitVersion": "v1.36.0"}
        self.access_rules: tuple[Rule, ...] | None = None
        """What SelfSubjectAccessReviews allow; None = everything."""
        self.backends: dict[tuple[str, str, str, str], str] = {}
        """(namespace, "services" | "pods", name, port) -> base URL the proxy forwards to."""

    async def __aenter__(self) -> ClusterFakeApiServer:
        await super().__aenter__()
        return self

    def forward(
        self, namespace: str, name: str, port: int, url: str, *, resource: str = "services"
    ) -> None:
        """Proxy requests for `name:port` (a Service, or a Pod) to `url` (``http://h:p``)."""
        self.backends[(namespace, resource, name, str(port))] = url.rstrip("/")

    def unforward(
        self, namespace: str, name: str, port: int, *, resource: str = "services"
    ) -> None:
        self.backends.pop((namespace, resource, name, str(port)), None)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if request.method == "GET" and path == "/version":
            self.requests.append((request.method, path, dict(request.query)))
            return web.json_response(self.version)
        if request.method == "POST" and path == SSAR:
            self.requests.append((request.method, path, dict(request.query)))
            return await self._access_review(request)
        parts = [p for p in path.split("/") if p]
        if (
            parts[:3] == ["api", "v1", "namespaces"]
            and len(parts) >= 7
            and parts[4] in ("services", "pods")
            and parts[6] == "proxy"
        ):
            self.requests.append((request.method, path, dict(request.query)))
            rest = "/" + "/".join(parts[7:])
            return await self._proxy(request, parts[3], parts[4], parts[5], rest)
        return await super()._handle(request)

    async def _access_review(self, request: web.Request) -> web.Response:
        review = await request.json()
        attrs: Mapping[str, Any] = (review.get("spec") or {}).get("resourceAttributes") or {}
        group, resource = str(attrs.get("group") or ""), str(attrs.get("resource") or "")
        if attrs.get("subresource"):
            resource = f"{resource}/{attrs['subresource']}"
        verb = str(attrs.get("verb") or "")
        ok = self.access_rules is None or allowed(self.access_rules, group, resource, verb)
        status: dict[str, Any] = {"allowed": ok}
        if ok:
            status["reason"] = "RBAC: allowed by the test's rules"
        body = {**review, "metadata": {"creationTimestamp": None}, "status": status}
        return web.json_response(body, status=201)

    async def _proxy(
        self, request: web.Request, namespace: str, resource: str, target: str, rest: str
    ) -> web.Response:
        bits = target.split(":")  # [https:]NAME[:PORT]
        if bits[0] in ("http", "https") and len(bits) > 1:
            bits = bits[1:]
        name, port = bits[0], bits[1] if len(bits) > 1 else "80"
        base = self.backends.get((namespace, resource, name, port))
        if base is None:
            msg = f'no endpoints available for service "{name}"'
            return web.json_response(_status(503, "ServiceUnavailable", msg), status=503)
        query = f"?{request.query_string}" if request.query_string else ""
        timeout = aiohttp.ClientTimeout(total=10)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(f"{base}{rest}{query}", ssl=False) as resp,
            ):
                body = await resp.read()
                ctype = resp.headers.get("Content-Type", "text/plain")
                return web.Response(status=resp.status, body=body, headers={"Content-Type": ctype})
        except (aiohttp.ClientError, TimeoutError) as exc:
            msg = f"error trying to reach service: {exc}"
            return web.json_response(_status(503, "ServiceUnavailable", msg), status=503)
