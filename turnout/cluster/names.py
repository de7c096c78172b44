"""The names, ports and annotations the cluster pieces agree on.

`mesh install` names its objects with these, `mesh inject` and the webhook write the pod's
containers and flags with them, `mesh proxy-init` captures to these ports, and `mesh check`
looks for exactly these objects. Stdlib only: `mesh proxy-init` imports it in an init
container, where start-up cost matters.
"""

from __future__ import annotations

import turnout

# ---------------------------------------------------------------- the control plane

NAMESPACE = "turnout"
"""The control plane's namespace (`mesh install --set namespace=...` changes it)."""
CONTROLLER = "turnout-controller"
"""Deployment, ServiceAccount, ClusterRole, ClusterRoleBinding, PodDisruptionBudget and the
leader-election Lease of `mesh serve --kubernetes`."""
IMAGE = f"turnout/turnout:{turnout.__version__}"
"""The image the manifests name (built from the repository's Dockerfile)."""
PART_OF_LABEL = "app.kubernetes.io/part-of"
"""Every object `mesh install` renders carries ``app.kubernetes.io/part-of: turnout``."""
COMPONENT_LABEL = "turnout.dev/control-plane-component"

XDS_SERVICE = "turnout-xds"
XDS_PORT = 8086
"""ADS (and the identity service, which shares the port) in the cluster."""
IDENTITY_SERVICE = "turnout-identity"
"""A second name for the xDS port: what proxies' `--identity-addr` names."""
ADMIN_SERVICE = "turnout-admin"
ADMIN_PORT = 9990
"""The control plane's admin: /ready /live /metrics /debug/*."""
DASHBOARD_SERVICE = "turnout-dashboard"
DASHBOARD_PORT = 50750
"""The web dashboard (`mesh serve --dashboard`); reach it with `kubectl port-forward`."""
INJECTOR_SERVICE = "turnout-injector"
INJECTOR_PORT = 8443
"""The webhook's HTTPS port in the controller pod (the Service exposes it on 443)."""
INJECTOR_PATH = "/inject"
"""AdmissionReview v1 POSTs; ``GET /ready`` answers 200 once the certificate is loaded."""
WEBHOOK_CONFIGURATION = "turnout-injector"
INJECTOR_TLS_SECRET = "turnout-injector-tls"
"""`tls.crt` / `tls.key` of the webhook's serving certificate (caBundle: its CA)."""
IDENTITY_SECRET = "turnout-identity"
"""The mesh CA's directory (`mesh identity init`'s files), mounted for `--identity-dir`."""
IDENTITY_DIR = "/var/run/turnout/identity"
INJECTOR_CERT_DIR = "/var/run/turnout/injector"
LEASE = CONTROLLER
"""The coordination.k8s.io/v1 Lease whose holder writes status (`mesh serve --leader-elect`)."""

# ---------------------------------------------------------------- the data plane

INJECT_ANNOTATION = "turnout.dev/inject"
"""``enabled`` / ``disabled`` on a workload's pod template, a Pod or a Namespace."""
INJECTED_ANNOTATION = "turnout.dev/injected"
"""What the injector sets on a pod it changed (the proxy version): inject twice = once."""
ANNOTATION_PREFIX = "config.turnout.dev/"
SKIP_INBOUND_PORTS = ANNOTATION_PREFIX + "skip-inbound-ports"
SKIP_OUTBOUND_PORTS = ANNOTATION_PREFIX + "skip-outbound-ports"
OPAQUE_PORTS = ANNOTATION_PREFIX + "opaque-ports"
PROXY_CPU_REQUEST = ANNOTATION_PREFIX + "proxy-cpu-request"
PROXY_MEMORY_REQUEST = ANNOTATION_PREFIX + "proxy-memory-request"
PROXY_CPU_LIMIT = ANNOTATION_PREFIX + "proxy-cpu-limit"
PROXY_MEMORY_LIMIT = ANNOTATION_PREFIX + "proxy-memory-limit"
PROXY_IMAGE = ANNOTATION_PREFIX + "proxy-image"
PROXY_LOG_LEVEL = ANNOTATION_PREFIX + "proxy-log-level"
PROXY_NATIVE_SIDECAR = ANNOTATION_PREFIX + "proxy-native-sidecar"
"""``"true"``: the proxy is an init container with ``restartPolicy: Always`` (Kubernetes 1.29+
native sidecar) whose startup probe holds the app back until the proxy is ready."""
REWRITE_APP_PROBES = ANNOTATION_PREFIX + "rewrite-app-probes"
"""``"false"``: the app containers' httpGet probes are left on the app ports (Istio's
``sidecar.istio.io/rewriteAppHTTPProbers: "false"``); by default they go to the proxy's
admin port, ``/app-health/<container>/<livez|readyz|startupz>``."""
APP_PROBES_ANNOTATION = "turnout.dev/app-probes"
"""What the injector sets on a pod whose probes it rewrote: the original ``httpGet`` of each
(JSON, ``{container: {livenessProbe: httpGet}}``), so `mesh uninject` puts them back."""
APP_HEALTH_PATH = "/app-health"
"""The admin path prefix of a rewritten probe (`mesh proxy --app-probes`)."""

PROXY_CONTAINER = "turnout-proxy"
INIT_CONTAINER = "turnout-init"
PROXY_INBOUND_PORT = 4143
"""Where iptables sends a pod's inbound TCP (`mesh proxy --inbound 0.0.0.0:4143`)."""
PROXY_OUTBOUND_PORT = 4140
"""Where iptables sends a pod's outbound TCP (`mesh proxy --outbound 127.0.0.1:4140`)."""
PROXY_ADMIN_PORT = 4191
"""The proxy's admin (/ready /live /metrics /tap); never captured."""
PROXY_UID = 2102
"""The proxy runs as this user; its own traffic is not captured (iptables owner match)."""
# The projected service account token's audience: engine.identity.settings.TOKEN_AUDIENCE.
IDENTITY_TOKEN_PATH = "/var/run/secrets/turnout/identity/token"
NEVER_INJECTED_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})
PROXY_IMAGE_ENV = "TURNOUT_PROXY_IMAGE"
"""Env of the controller's pod: the image the injector writes into pods (default `IMAGE`)."""
