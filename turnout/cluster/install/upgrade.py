"""`mesh upgrade`: what `mesh install` renders with the same values, but with the cluster's
own trust anchor and injector certificate, so re-applying rotates neither.

```
values (--ha, -f, --set, --image) ─────────────────────────────┐
Secret NS/turnout-identity      ──read_secret──> identity files ├─> install_objects ─> checked
Secret NS/turnout-injector-tls  ──read_secret──> tls.crt/key    │
   ca.crt (or the webhook configuration's caBundle) ────────────┘
```

The identity files are checked to fit together (`load_material`, as `mesh serve` loads
them) before anything is rendered. A Secret missing means Turnout is not installed in the
namespace: `UpgradeError` (one line, suggesting `mesh install`). Blocking (cluster GETs).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from turnout.cluster import names
from turnout.cluster.install.cluster import read_object, read_secret
from turnout.cluster.install.errors import ClusterUnavailable, InstallError
from turnout.cluster.install.identity import FILES
from turnout.cluster.install.render import checked, install_objects
from turnout.cluster.install.values import Values
from turnout.cluster.install.webhook import ServingCert
from turnout.engine.identity.errors import StoreError
from turnout.engine.identity.store import load_material

Raw = dict[str, Any]

MWC_PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"


class UpgradeError(InstallError):
    """The cluster's Turnout cannot be upgraded in place (not installed, unreadable)."""


def _secret(
    values: Values, name: str, kubeconfig: str | None, context: str | None
) -> dict[str, bytes]:
    try:
        files = read_secret(values.namespace, name, kubeconfig=kubeconfig, context=context)
    except ClusterUnavailable as exc:
        raise UpgradeError(f"cannot read Secret {values.namespace}/{name}: {exc}") from None
    if files is None:
        raise UpgradeError(
            f"Secret {values.namespace}/{name} not found: Turnout is not installed in namespace"
            f" {values.namespace} (mesh install | kubectl apply -f -)"
        )
    return files


def _checked_identity(values: Values, files: Mapping[str, bytes]) -> dict[str, bytes]:
    where = f"Secret {values.namespace}/{names.IDENTITY_SECRET}"
    missing = [n for n in FILES if n not in files]
    if missing:
        raise UpgradeError(f"{where} has no {', '.join(missing)}")
    with tempfile.TemporaryDirectory(prefix="turnout-upgrade-") as tmp:
        for name in FILES:
            (Path(tmp) / name).write_bytes(files[name])
        try:
            load_material(Path(tmp))
        except StoreError as exc:
            raise UpgradeError(f"{where}: {exc}") from None
    return {n: files[n] for n in FILES}


def _ca_bundle(values: Values, kubeconfig: str | None, context: str | None) -> bytes:
    """The webhook configuration's caBundle (a Secret written before it carried ca.crt)."""
    import base64

    name = names.WEBHOOK_CONFIGURATION
    try:
        mwc = read_object(MWC_PATH + name, kubeconfig=kubeconfig, context=context)
    except ClusterUnavailable as exc:
        raise UpgradeError(f"cannot read MutatingWebhookConfiguration {name}: {exc}") from None
    hooks = (mwc or {}).get("webhooks") or [{}]
    bundle = (hooks[0].get("clientConfig") or {}).get("caBundle")
    if not bundle:
        raise UpgradeError(
            f"Secret {values.namespace}/{names.INJECTOR_TLS_SECRET} has no ca.crt and"
            f" MutatingWebhookConfiguration {name} no caBundle"
        )
    return base64.b64decode(bundle)


def cluster_cert(values: Values, *, kubeconfig: str | None, context: str | None) -> ServingCert:
    """The injector's serving certificate and its CA, as the cluster holds them."""
    files = _secret(values, names.INJECTOR_TLS_SECRET, kubeconfig, context)
    for key in ("tls.crt", "tls.key"):
        if not files.get(key):
            raise UpgradeError(
                f"Secret {values.namespace}/{names.INJECTOR_TLS_SECRET} has no {key}"
            )
    ca = files.get("ca.crt") or _ca_bundle(values, kubeconfig, context)
    return ServingCert(ca_crt=ca, tls_crt=files["tls.crt"], tls_key=files["tls.key"])


def render_upgrade(
    values: Values, *, kubeconfig: str | None = None, context: str | None = None
) -> list[Raw]:
    """`mesh install`'s objects for `values`, with the cluster's identity and certificate."""
    identity = _checked_identity(
        values, _secret(values, names.IDENTITY_SECRET, kubeconfig, context)
    )
    cert = cluster_cert(values, kubeconfig=kubeconfig, context=context)
    return checked(install_objects(values, identity=identity, cert=cert))
