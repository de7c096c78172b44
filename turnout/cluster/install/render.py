"""What `mesh install [--crds]` prints and what `mesh uninstall` names, in apply order.

```
Values + identity files + serving cert
   └─> install_objects: Namespace, ServiceAccount, ClusterRole, ClusterRoleBinding,
                        Secret identity, Secret injector-tls, Services (xds, identity,
                        admin, injector), Deployment, [PodDisruptionBudget],
                        [ConfigMaps of the Grafana dashboards (grafana.dashboards)],
                        MutatingWebhookConfiguration (last: the injector exists first)
own_crds()  ──>  crd_objects
   every object ──schema.check_object──> dump(objs, "yaml" | "json") ──> stdout
uninstall_refs(objs): apiVersion, kind, metadata.name/namespace of each, in reverse order
```

YAML is one document per object (``---`` between them); JSON is one ``v1`` List, which
``kubectl apply -f -`` takes as well. Both are byte-for-byte the same for the same inputs:
keys in a fixed order, no timestamps (only the generated keys and certificates differ
between runs without ``--identity-dir``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import yaml

from turnout.cluster.install import controller, grafana, webhook
from turnout.cluster.install.identity import identity_secret
from turnout.cluster.install.schema import check_object
from turnout.cluster.install.values import Values

Raw = dict[str, Any]
Format = Literal["yaml", "json"]


def install_objects(
    values: Values, *, identity: Mapping[str, bytes], cert: webhook.ServingCert
) -> list[Raw]:
    """The control plane's objects, in the order `kubectl apply` should create them."""
    objs = [
        controller.namespace(values),
        controller.service_account(values),
        controller.cluster_role(),
        controller.cluster_role_binding(values),
        identity_secret(values, dict(identity)),
        webhook.tls_secret(values, cert),
        *controller.services(values),
        controller.deployment(values),
    ]
    if values.pod_disruption_budget:
        objs.append(controller.pod_disruption_budget(values))
    objs += grafana.dashboard_configmaps(values)
    objs.append(webhook.webhook_configuration(values, cert))
    return objs


def render_install(values: Values, *, identity: Mapping[str, bytes], now: dt.datetime) -> list[Raw]:
    """`install_objects` with a fresh serving certificate, each object checked."""
    cert = webhook.serving_cert_for(values, now=now)
    return checked(install_objects(values, identity=identity, cert=cert))


def checked(objs: Iterable[Raw]) -> list[Raw]:
    """`objs`, every one validated against its Kubernetes model (`InvalidObject` if not)."""
    out = list(objs)
    for obj in out:
        check_object(obj)
    return out


def uninstall_refs(objs: Iterable[Raw]) -> list[Raw]:
    """What `kubectl delete -f` needs of each object, dependents before what they need (the
    webhook first, the namespace last)."""
    refs = []
    for obj in reversed(list(objs)):
        meta = {"name": obj["metadata"]["name"]}
        if "namespace" in obj["metadata"]:
            meta["namespace"] = obj["metadata"]["namespace"]
        refs.append({"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": meta})
    return refs


class _Dumper(yaml.SafeDumper):
    """Block style, multi-line strings (none today) as literals, keys in insertion order."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def dump(objs: Iterable[Raw], output: Format) -> str:
    """The manifest text: YAML documents, or one JSON `List`."""
    items = list(objs)
    if output == "json":
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent=2) + "\n"
    docs = [
        yaml.dump(o, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)
        for o in items
    ]
    return "".join(f"---\n{d}" for d in docs)
