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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

PROBE_KINDS = ("livenessProbe", "readinessProbe", "startupProbe")


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
