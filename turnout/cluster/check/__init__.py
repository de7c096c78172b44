"""`mesh check [--pre] [--proxy]`: Linkerd's check for a cluster running Turnout.

```
run.py            CheckOptions, run_check (which categories, in order), check_until (--wait)
api.py            ClusterApi: GETs, SelfSubjectAccessReviews, the API server's service/pod proxy
pre.py            kubernetes-api, kubernetes-version, pre-kubernetes-setup, gateway-api
control_plane.py  turnout-existence (namespace, pods ready, /ready), turnout-crds, turnout-status
tls.py            turnout-identity (engine.identity.health), the injector webhook's certificate
proxies.py        turnout-data-plane: meshed pods, their ADS streams (/debug/proxies), sync
probe.py          direct HTTP(S) GETs (--control-plane, --injector-url), with aiohttp
results.py        Check/Category/Report and the output: table, short, json
```

Every check reads; none writes to the cluster. A check that fails says what it saw and, on
the line under it, what to do (no URLs). `cli.cluster_check` prints and sets the exit code.
"""

from __future__ import annotations
