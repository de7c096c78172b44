"""Turnout in a cluster: what `mesh install` renders, the injector, traffic capture, checks.

```
names.py     the names, ports and annotations every cluster piece agrees on (stdlib only)
install/     mesh install [--crds] | uninstall: the manifests (CRDs, RBAC, control plane,
             Services, webhook), validated against the Kubernetes API's models
inject/      mesh inject | uninject and the injector webhook (`mesh serve --injector`):
             the proxy sidecar, the init container, AdmissionReview v1 + JSONPatch
capture/     mesh proxy-init: the iptables rules that send a pod's TCP through its proxy
check/       mesh check [--pre] [--proxy]: the ✔/× lines of a cluster and its data plane
```

The proxy's side of capture (each connection's original destination, `SO_ORIGINAL_DST`)
is in `proxy/`, which imports nothing from here: the names it needs arrive as flags.
"""

from __future__ import annotations
