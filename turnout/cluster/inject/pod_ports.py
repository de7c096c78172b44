"""What the proxy must know of the app containers' ports: their names (a Server's
``port: http``) and the kubelet's HTTP probes (Linkerd's default probe route).

```
spec.containers[*].ports[name, containerPort]          -> --port-name NAME=PORT
spec.containers[*].{liveness,readiness,startup}Probe
   .httpGet{port (number or a port name), path}       -> --probe PORT:PATH
```

A Server's port name is looked up in every app container, the first port of a name winning
(Linkerd's rule); a probe's named port in its own container's ports (the kubelet's). A
probe whose named port its container lacks, an HTTPS probe, or an exec/tcpSocket/grpc one
adds nothing: the kubelet's plaintext GET is the only call the proxy lets through.

Probe rewriting (Istio's; off with ``config.turnout.dev/rewrite-app-probes: "false"``):

```
spec.containers[NAME].{liveness,readiness,startup}Probe.httpGet (HTTP or HTTPS, a port
   its container resolves)
      -> httpGet {path: /app-health/NAME/livez|readyz|startupz, port: 4191, scheme: HTTP}
      -> --app-probes {"NAME/livez": {port, path, scheme, httpHeaders, host, timeoutSeconds}}
      -> turnout.dev/app-probes {"NAME": {"livenessProbe": <the original httpGet>}}
```

The kubelet then probes the proxy's admin port, which `mesh proxy-init` never captures, and
the proxy makes the original probe against the app over loopback: a STRICT app port never
sees a plaintext probe. The rest of each probe (periods, thresholds, ``timeoutSeconds``)
stays as written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from turnout.cluster import names

PROBE_KINDS = ("livenessProbe", "readinessProbe", "startupProbe")
APP_HEALTH_KINDS = {
    "livenessProbe": "livez",
    "readinessProbe": "readyz",
    "startupProbe": "startupz",
}
"""A probe field -> the last segment of its ``/app-health`` path (Istio's names)."""
DEFAULT_PROBE_TIMEOUT_S = 1
"""The kubelet's ``timeoutSeconds`` when a probe has none."""


def port_names(apps: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in apps:
        for p in c.get("ports") or ():
            if not isinstance(p, Mapping):
                continue
            name, number = p.get("name"), p.get("containerPort")
            if isinstance(name, str) and name and isinstance(number, int):
                out.setdefault(name, number)
    return out


def probes(apps: Iterable[Mapping[str, Any]]) -> list[tuple[int, str]]:
    """(port, path) of each HTTP probe, in container then kind order, without repeats."""
    out: list[tuple[int, str]] = []
    for c in apps:
        names = port_names([c])
        for kind in PROBE_KINDS:
            probe = c.get(kind)
            get = probe.get("httpGet") if isinstance(probe, Mapping) else None
            if not isinstance(get, Mapping) or str(get.get("scheme", "HTTP")).upper() != "HTTP":
                continue
            port = get.get("port")
            number = port if isinstance(port, int) else names.get(str(port))
            path = str(get.get("path") or "/").split("?", 1)[0]
            if number is not None and path.startswith("/") and (number, path) not in out:
                out.append((number, path))
    return out


def pod_port_args(apps: Iterable[Mapping[str, Any]]) -> list[str]:
    """``--port-name`` and ``--probe`` flags for `mesh proxy` (docs/injection.md)."""
    apps = list(apps)
    names = port_names(apps)
    args: list[str] = []
    for name, number in names.items():
        args += ["--port-name", f"{name}={number}"]
    for number, path in probes(apps):
        args += ["--probe", f"{number}:{path}"]
    return args


def _resolved_port(port: Any, names_: Mapping[str, int]) -> int | None:
    """A probe's ``port`` (a number, a numeric string or its container's port name)."""
    if isinstance(port, int) and not isinstance(port, bool):
        return port if 1 <= port <= 65535 else None
    text = str(port)
    if text.isdigit():
        return int(text) if 1 <= int(text) <= 65535 else None
    return names_.get(text)


def app_health_path(container: str, kind: str) -> str:
    return f"{names.APP_HEALTH_PATH}/{container}/{APP_HEALTH_KINDS[kind]}"


def rewrite_probes(apps: Iterable[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Point the app containers' httpGet probes at the proxy's admin port, in place.

    Returns (what ``--app-probes`` carries, keyed ``CONTAINER/livez``; the original
    ``httpGet`` of each, keyed container then probe field, for the annotation). A probe
    whose port its container cannot resolve is left as it is: the kubelet fails it anyway.
    """
    flag: dict[str, Any] = {}
    originals: dict[str, Any] = {}
    for c in apps:
        container = c.get("name")
        if not isinstance(container, str) or not container:
            continue
        own = port_names([c])
        for kind in PROBE_KINDS:
            probe = c.get(kind)
            get = probe.get("httpGet") if isinstance(probe, dict) else None
            if not isinstance(probe, dict) or not isinstance(get, dict):
                continue
            scheme = str(get.get("scheme", "HTTP")).upper()
            port = _resolved_port(get.get("port"), own)
            path = str(get.get("path") or "/")
            if port is None or scheme not in ("HTTP", "HTTPS") or not path.startswith("/"):
                continue
            target: dict[str, Any] = {"port": port, "path": path, "scheme": scheme}
            if get.get("host"):
                target["host"] = str(get["host"])
            headers = [
                {"name": str(h["name"]), "value": str(h.get("value", ""))}
                for h in get.get("httpHeaders") or ()
                if isinstance(h, Mapping) and h.get("name")
            ]
            if headers:
                target["httpHeaders"] = headers
            timeout = probe.get("timeoutSeconds")
            target["timeoutSeconds"] = (
                timeout if isinstance(timeout, int) and timeout > 0 else DEFAULT_PROBE_TIMEOUT_S
            )
            flag[f"{container}/{APP_HEALTH_KINDS[kind]}"] = target
            originals.setdefault(container, {})[kind] = get
            probe["httpGet"] = rewritten(container, kind)
    return flag, originals


def rewritten(container: str, kind: str) -> dict[str, Any]:
    """The httpGet the kubelet is given instead of the app's."""
    return {
        "path": app_health_path(container, kind),
        "port": names.PROXY_ADMIN_PORT,
        "scheme": "HTTP",
    }


def restore_probes(apps: Iterable[dict[str, Any]], annotation: str) -> bool:
    """Put back the original httpGet of each probe `rewrite_probes` rewrote (the
    ``turnout.dev/app-probes`` annotation's JSON), in place; True when one was. A probe
    changed since (not the rewritten httpGet any more) is the user's and stays."""
    try:
        originals = json.loads(annotation)
    except json.JSONDecodeError:
        return False
    if not isinstance(originals, dict):
        return False
    changed = False
    for c in apps:
        container = c.get("name")
        if not isinstance(container, str):
            continue
        kinds = originals.get(container)
        if not isinstance(kinds, dict):
            continue
        for kind, get in kinds.items():
            probe = c.get(kind)
            if (
                kind in APP_HEALTH_KINDS
                and isinstance(get, dict)
                and isinstance(probe, dict)
                and probe.get("httpGet") == rewritten(container, kind)
            ):
                probe["httpGet"] = get
                changed = True
    return changed


def encode(data: Mapping[str, Any]) -> str:
    """Compact, key-sorted JSON: the same pod gives the same flag and annotation."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))
