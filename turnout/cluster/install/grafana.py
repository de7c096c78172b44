"""`mesh install --grafana`: Turnout's Grafana dashboards as ConfigMaps Grafana's sidecar loads.

```
values.grafana.dashboards ──> dashboard_configmaps: one ConfigMap per dashboard
   ConfigMap turnout-grafana-<name>   in grafana.namespace (default: the control plane's)
     labels  grafana_dashboard: "1"   what Grafana's dashboard sidecar (k8s-sidecar, the
                                      Helm chart's sidecar.dashboards) selects by default
     annotations grafana_folder: Turnout   the folder, for a sidecar with folderAnnotation
     data    turnout-<name>.json: the dashboard's JSON (`turnout.viz.grafana`), as shipped
write_dashboards(dir) ──> DIR/turnout-<name>.json   (`--grafana-json DIR`: a standalone Grafana)
```

The JSON is the package's file byte for byte, so the ConfigMaps and the exported files are
the same dashboards; each stays well under the 256 KiB ``kubectl apply`` can annotate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from turnout.cluster.install.errors import InstallError
from turnout.cluster.install.labels import metadata
from turnout.cluster.install.values import Values
from turnout.viz.grafana import DASHBOARDS, dashboard_text, file_name

Raw = dict[str, Any]

COMPONENT = "grafana-dashboards"
SIDECAR_LABEL = "grafana_dashboard"
"""The label (value ``"1"``) Grafana's dashboard sidecar watches ConfigMaps for."""
FOLDER_ANNOTATION = "grafana_folder"
FOLDER = "Turnout"


def configmap_name(name: str) -> str:
    return f"turnout-grafana-{name}"


def dashboard_configmaps(values: Values) -> list[Raw]:
    """One ConfigMap per dashboard, labelled for Grafana's sidecar ([] when not asked for)."""
    if not values.grafana.dashboards:
        return []
    namespace = values.grafana.namespace or values.namespace
    out = []
    for name in DASHBOARDS:
        meta = metadata(configmap_name(name), namespace, COMPONENT)
        meta["labels"][SIDECAR_LABEL] = "1"
        meta["annotations"] = {FOLDER_ANNOTATION: FOLDER}
        data = {file_name(name): dashboard_text(name)}
        out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data})
    return out


def write_dashboards(directory: Path) -> list[Path]:
    """Write every dashboard as ``DIR/turnout-<name>.json`` (DIR is created); the paths."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for name in DASHBOARDS:
            path = directory / file_name(name)
            path.write_text(dashboard_text(name), encoding="utf-8")
            paths.append(path)
    except OSError as exc:
        raise InstallError(f"{directory}: {exc.strerror or exc}") from None
    return paths
