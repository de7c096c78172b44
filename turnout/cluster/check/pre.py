"""`mesh check --pre`, and the API checks every mode starts with.

```
kubernetes-api         can initialize the client (kubeconfig / in-cluster), can query the
                       Kubernetes API (GET /version)
kubernetes-version     is running the minimum Kubernetes API version (MIN_KUBERNETES)
pre-kubernetes-setup   control plane namespace does not already exist (‼), can create each
                       kind `mesh install` creates (SelfSubjectAccessReview, one per kind)
gateway-api            Gateway API CRDs are installed (‼: Turnout does not ship them)
```

Deliberately not here: what is checked once Turnout is installed (`control_plane.py`,
`tls.py`, `proxies.py`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from turnout.cluster.check.api import ApiError, ClusterApi
from turnout.cluster.check.results import Report, either, failed, ok, warned
from turnout.cluster.install.crds import GATEWAY_API_RELEASE
from turnout.engine.sources.k8s.kinds import GW, WATCHED_KINDS

MIN_KUBERNETES = (1, 29)
"""The oldest Kubernetes minor release Turnout supports (Gateway API v1 routes, native
sidecars, ValidatingAdmissionPolicy are all GA there or earlier)."""

CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


@dataclass(frozen=True, slots=True)
class Creatable:
    """A kind `mesh install` creates: the SelfSubjectAccessReview that says we may."""

    kind: str
    group: str
    resource: str
    namespaced: bool
    warning: bool = False
    """Only `mesh install --ha` needs it: missing permission is a ‼."""


INSTALLED_KINDS = (
    Creatable("Namespaces", "", "namespaces", False),
    Creatable("ClusterRoles", "rbac.authorization.k8s.io", "clusterroles", False),
    Creatable("ClusterRoleBindings", "rbac.authorization.k8s.io", "clusterrolebindings", False),
    Creatable(
        "CustomResourceDefinitions", "apiextensions.k8s.io", "customresourcedefinitions", False
    ),
    Creatable(
        "MutatingWebhookConfigurations",
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        False,
    ),
    Creatable("ServiceAccounts", "", "serviceaccounts", True),
    Creatable("Services", "", "services", True),
    Creatable("Secrets", "", "secrets", True),
    Creatable("Deployments", "apps", "deployments", True),
    Creatable("PodDisruptionBudgets", "policy", "poddisruptionbudgets", True, warning=True),
)

GATEWAY_API_KINDS = tuple(k for k in WATCHED_KINDS if k.group == GW)
"""The standard-channel Gateway API kinds Turnout watches (HTTPRoute, GRPCRoute, ...)."""

GATEWAY_API_HINT = (
    "Turnout routes with the Gateway API kinds but does not ship them: apply the standard"
    f" channel of Gateway API {GATEWAY_API_RELEASE} or newer (its standard-install.yaml);"
    " mesh install --crds prints the command"
)


async def kubernetes_api(report: Report, api: ClusterApi | None, load_error: str) -> str | None:
    """The first category; the server's `gitVersion`, or None when nothing else can run."""
    cat = report.category("kubernetes-api")
    if api is None:
        hint = (
            "mesh check reads the kubeconfig as kubectl does: --kubeconfig, --context, $KUBECONFIG"
        )
        cat.checks.append(failed("can initialize the client", load_error, hint))
        return None
    cat.checks.append(ok("can initialize the client"))
    try:
        version = await api.get("/version")
    except ApiError as exc:
        hint = "the API server named by the kubeconfig does not answer: is the cluster up, is the context right?"
        cat.checks.append(failed("can query the Kubernetes API", str(exc), hint))
        return None
    cat.checks.append(ok("can query the Kubernetes API"))
    git = str(version.get("gitVersion") or "")
    found = _minor(str(version.get("major") or ""), str(version.get("minor") or ""), git)
    cat = report.category("kubernetes-version")
    want = ".".join(map(str, MIN_KUBERNETES))
    error = ""
    if found is None:
        error = f"cannot read the server's version from {version!r:.120}"
    elif found < MIN_KUBERNETES:
        error = f"Kubernetes is on version {git or '.'.join(map(str, found))}, older than {want}"
    hint = f"Turnout needs Kubernetes {want} or later: upgrade the cluster"
    cat.checks.append(either("is running the minimum Kubernetes API version", error, hint))
    return git


def _minor(major: str, minor: str, git: str) -> tuple[int, int] | None:
    """(1, 29) from major "1", minor "29+" (a managed cluster's), or from "v1.29.3"."""
    m = re.match(r"(\d+)", major), re.match(r"(\d+)", minor)
    if m[0] and m[1]:
        return int(m[0].group(1)), int(m[1].group(1))
    g = re.match(r"v?(\d+)\.(\d+)", git)
    return (int(g.group(1)), int(g.group(2))) if g else None


async def pre_setup(report: Report, api: ClusterApi, *, namespace: str) -> None:
    cat = report.category("pre-kubernetes-setup")
    try:
        existing = await api.get_or_none(f"/api/v1/namespaces/{namespace}")
    except ApiError as exc:
        existing = None
        cat.checks.append(
            failed(
                "control plane namespace does not already exist",
                str(exc),
                "mesh check needs to read Namespaces to tell whether Turnout is installed",
            )
        )
    else:
        hint = (
            "Turnout may be installed already: mesh check (without --pre) checks it; mesh"
            " uninstall | kubectl delete -f - removes it"
        )
        error = f'namespace "{namespace}" already exists' if existing is not None else ""
        cat.checks.append(
            either("control plane namespace does not already exist", error, hint, warning=True)
        )
    for kind in INSTALLED_KINDS:
        description = f"can create {kind.kind}"
        ns = namespace if kind.namespaced else None
        try:
            allowed, reason = await api.can("create", kind.group, kind.resource, namespace=ns)
        except ApiError as exc:
            allowed, reason = False, str(exc)
        where = f' in namespace "{namespace}"' if kind.namespaced else ""
        error = "" if allowed else f"not allowed to create {kind.resource}{where}"
        if error and reason:
            error += f": {reason}"
        hint = (
            "mesh install creates this kind; run it as a user allowed to (cluster-admin or a"
            " role granting create on it)"
        )
        if kind.warning:
            hint = "only mesh install --ha creates PodDisruptionBudgets; without --ha this is fine"
        cat.checks.append(either(description, error, hint, warning=kind.warning))


async def missing_crds(api: ClusterApi) -> list[str]:
    """Names of the Gateway API CRDs that are not installed."""
    missing = []
    for spec in GATEWAY_API_KINDS:
        name = f"{spec.plural}.{spec.group}"
        if await api.get_or_none(f"{CRD_PATH}/{name}") is None:
            missing.append(name)
    return missing


async def gateway_api(report: Report, api: ClusterApi) -> None:
    cat = report.category("gateway-api")
    description = "Gateway API CRDs are installed"
    try:
        missing = await missing_crds(api)
    except ApiError as exc:
        hint = "mesh check needs to read CustomResourceDefinitions"
        cat.checks.append(warned(description, str(exc), hint))
        return
    error = f"not installed: {', '.join(missing)}" if missing else ""
    cat.checks.append(either(description, error, GATEWAY_API_HINT, warning=True))
