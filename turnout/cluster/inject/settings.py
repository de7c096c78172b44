"""What the injector needs to know of the cluster (`DEFAULT_*`), and a pod's proxy config.

`InjectSettings` is the control plane's side (where xDS and identity are, the image, the
trust domain): `mesh inject --manual` takes it from flags, the webhook from `mesh serve`.
`ProxyConfig` is the pod's side: the ``config.turnout.dev/*`` annotations (the namespace's,
then the pod's on top), each value checked. A bad value would make the API server refuse
the injected pod, so it is dropped with a warning and the default stays.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from turnout.cluster import names
from turnout.engine.identity.settings import DEFAULT_TRUST_DOMAIN

DEFAULT_CPU_REQUEST = "100m"
DEFAULT_MEMORY_REQUEST = "64Mi"
"""The proxy's requests when no annotation sets them (it starts at about 36 MB)."""
DEFAULT_TOKEN_EXPIRATION_S = 86_400
"""The projected service account token's lifetime; the kubelet renews it at 80%."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectSettings:
    control_plane_namespace: str = names.NAMESPACE
    """Where `mesh install` put the control plane: the xDS and identity Services' namespace."""
    image: str = names.IMAGE
    """The proxy's and the init container's image (``config.turnout.dev/proxy-image`` wins)."""
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    """The identity names' domain: ``SA.NS.serviceaccount.identity.<trust_domain>``."""

    @property
    def xds(self) -> str:
        ns = self.control_plane_namespace
        return f"{names.XDS_SERVICE}.{ns}.svc.cluster.local:{names.XDS_PORT}"

    @property
    def identity_addr(self) -> str:
        ns = self.control_plane_namespace
        return f"{names.IDENTITY_SERVICE}.{ns}.svc.cluster.local:{names.XDS_PORT}"


DEFAULT_INJECT_SETTINGS = InjectSettings()


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyConfig:
    image: str
    cpu_request: str = DEFAULT_CPU_REQUEST
    memory_request: str = DEFAULT_MEMORY_REQUEST
    cpu_limit: str | None = None
    """None = no limit."""
    memory_limit: str | None = None
    """None = no limit."""
    log_level: str = "warning"
    """``warning``, ``info`` or ``debug`` (`mesh -v`, `mesh -vv`)."""
    opaque_ports: str = ""
    """``3306,4000-4100``; "" = none."""
    skip_inbound_ports: str = ""
    skip_outbound_ports: str = ""
    native_sidecar: bool = False
    """The proxy is a native sidecar (an init container that keeps running)."""
    rewrite_app_probes: bool = True
    """The app containers' httpGet probes go to the proxy's admin port (``false``: left on
    the app ports, where PeerAuthentication STRICT resets the kubelet's plaintext GETs)."""


_QUANTITY = re.compile(r"(\d+(\.\d+)?|\.\d+)([eE][-+]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?")
"""A Kubernetes resource quantity (``100m``, ``64Mi``, ``0.5``)."""
_PORT_ITEM = re.compile(r"(\d{1,5})(-(\d{1,5}))?")
_IMAGE = re.compile(r"[^\s]+")
LOG_LEVELS = ("warning", "info", "debug")


def port_list(text: str) -> str | None:
    """``"3306, 4000-4100"`` -> ``"3306,4000-4100"``; None when an item is not a port or a
    range of ports (1..65535, low first)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    for item in items:
        m = _PORT_ITEM.fullmatch(item)
        if m is None:
            return None
        low, high = int(m[1]), int(m[3] or m[1])
        if not 1 <= low <= high <= 65535:
            return None
    return ",".join(items)


def proxy_config(
    annotations: Mapping[str, str], *, settings: InjectSettings
) -> tuple[ProxyConfig, list[str]]:
    """The pod's proxy config from its (merged) annotations, and a warning per bad value."""
    warnings: list[str] = []
    values: dict[str, Any] = {}

    def take(key: str, field: str, ok: bool, want: str) -> None:
        if ok:
            values[field] = annotations[key].strip()
        else:
            warnings.append(f"{key}: want {want}, got {annotations[key]!r} (ignored)")

    for key, field in (
        (names.PROXY_CPU_REQUEST, "cpu_request"),
        (names.PROXY_MEMORY_REQUEST, "memory_request"),
        (names.PROXY_CPU_LIMIT, "cpu_limit"),
        (names.PROXY_MEMORY_LIMIT, "memory_limit"),
    ):
        if key in annotations:
            take(key, field, bool(_QUANTITY.fullmatch(annotations[key].strip())), "a quantity")
    if names.PROXY_IMAGE in annotations:
        take(
            names.PROXY_IMAGE,
            "image",
            bool(_IMAGE.fullmatch(annotations[names.PROXY_IMAGE])),
            "an image",
        )
    if names.PROXY_LOG_LEVEL in annotations:
        ok = annotations[names.PROXY_LOG_LEVEL].strip() in LOG_LEVELS
        take(names.PROXY_LOG_LEVEL, "log_level", ok, " | ".join(LOG_LEVELS))
    native = annotations.get(names.PROXY_NATIVE_SIDECAR)
    if native is not None and native.strip() not in ("true", "false"):
        warnings.append(
            f"{names.PROXY_NATIVE_SIDECAR}: want true | false, got {native!r} (ignored)"
        )
        native = None
    rewrite = annotations.get(names.REWRITE_APP_PROBES)
    if rewrite is not None and rewrite.strip() not in ("true", "false"):
        warnings.append(f"{names.REWRITE_APP_PROBES}: want true | false, got {rewrite!r} (ignored)")
        rewrite = None
    for key, field in (
        (names.OPAQUE_PORTS, "opaque_ports"),
        (names.SKIP_INBOUND_PORTS, "skip_inbound_ports"),
        (names.SKIP_OUTBOUND_PORTS, "skip_outbound_ports"),
    ):
        if key in annotations:
            ports = port_list(annotations[key])
            if ports is None:
                warnings.append(
                    f"{key}: want ports and ranges (3306,4000-4100), got {annotations[key]!r}"
                    " (ignored)"
                )
            else:
                values[field] = ports
    image = values.pop("image", None) or settings.image
    config = ProxyConfig(
        image=image,
        native_sidecar=(native or "").strip() == "true",
        rewrite_app_probes=(rewrite or "").strip() != "false",
    )
    return dataclasses.replace(config, **values), warnings
