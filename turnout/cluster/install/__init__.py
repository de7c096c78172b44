"""`mesh install [--crds]`, `mesh upgrade` and `mesh uninstall`: the manifests of Turnout in a cluster.

```
values.py      the defaults and --ha / -f FILE / --set key=value on top (one Values tree)
controller.py  Namespace, ServiceAccount, ClusterRole (= rbac.controller_rules()), binding,
               the controller Deployment, PodDisruptionBudget, Services
identity.py    the mesh CA's Secret: an identity directory's files
webhook.py     the injector's MutatingWebhookConfiguration and serving certificate
crds.py        our CRDs, and the notes on the Gateway API CRDs (cluster.py asks a cluster)
upgrade.py     `mesh upgrade`: install's objects with the cluster's own identity and
               injector Secrets (cluster.py reads them)
schema.py      every object checked against the kubernetes client's models
render.py      the objects in apply order, YAML or JSON out, uninstall's references
```

Pure rendering apart from key generation and the optional CRD LIST; `cli.cluster_install`
prints. docs/cluster.md documents the values and what uninstall removes.
"""

from __future__ import annotations
