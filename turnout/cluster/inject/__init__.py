"""`mesh inject` / `mesh uninject` and the injector webhook (`mesh serve --injector`).

```
settings.py    InjectSettings (where xDS and identity are, image, trust domain) and a pod's
               ProxyConfig from its config.turnout.dev/* annotations
sidecar.py     inject_pod / uninject_pod: the proxy container, the init container, the
               volumes, the annotation; workload_of (deployment/NAME of a ReplicaSet's pod)
manifests.py   documents in, documents out (YAML or JSON, Lists, multi-document), the
               report lines Linkerd's inject prints
patch.py       json_patch(before, after): RFC 6902 operations
admission.py   AdmissionReview v1 -> response (always allowed; JSONPatch when injected)
namespaces.py  a namespace's annotations for the webhook (the source's snapshot, a directory)
webhook.py     InjectorWebhook: HTTPS (certificate reloaded when its files change)
```

`mesh inject --manual` and the webhook run the same `inject_pod`, so a pod the webhook
patched is the pod `mesh inject --manual` prints. The CLI runner is `cli.cluster_inject`.
"""

from __future__ import annotations
