"""Policy adapter: Linkerd `policy.linkerd.io` and Istio `security.istio.io` kinds -> one
policy IR (`engine.ir_policy.PolicyTable`), the way `adapters/smi` turns SMI into routes.

```
Resources (parsed, validated) --compile_policy--> PolicyResult(table, diagnostics)
   Server, ServerAuthorization, AuthorizationPolicy, MeshTLSAuthentication,
   NetworkAuthentication, HTTPRoute/GRPCRoute with a Server parent  --linkerd.py--> servers
   Namespace config.linkerd.io/default-inbound-policy               --linkerd.py--> namespace_defaults
   security.istio.io AuthorizationPolicy (+ Services for targetRefs) --istio.py--> workload_policies
   security.istio.io PeerAuthentication                            --authn.py--> peer_authentications
   security.istio.io RequestAuthentication (+ Services)            --authn.py--> request_authentications
   Service ports of server-first protocols not marked opaque       --opaque.py--> warnings
```

A team can bring either dialect (or both): the decision (`engine.authorization`) reads one
table. PeerAuthentication and RequestAuthentication are carried as data (their mTLS modes and
JWT rules), which the proxy's TLS and JWT checks apply; `decide` does not read them. Pure: no I/O, clock or randomness; warnings
(a missing authentication, a policy that reaches nothing) are diagnostics.
"""

from __future__ import annotations

from dataclasses import dataclass

from turnout.adapters.policy.authn import peer_authentications, request_authentications
from turnout.adapters.policy.istio import istio_policies
from turnout.adapters.policy.linkerd import linkerd_servers, namespace_defaults
from turnout.adapters.policy.opaque import server_first_warnings
from turnout.engine.config import (
    DEFAULT_CLUSTER_NETWORKS,
    DEFAULT_INBOUND_POLICY,
    DEFAULT_ISTIO_ROOT_NAMESPACE,
)
from turnout.engine.diagnostics import Diagnostic, sorted_diagnostics
from turnout.engine.ir_policy import DefaultPolicy, Network, PolicyTable
from turnout.engine.model import Resources

__all__ = ["PolicyResult", "compile_policy"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyResult:
    table: PolicyTable
    diagnostics: tuple[Diagnostic, ...]


def compile_policy(
    resources: Resources,
    *,
    cluster_default: DefaultPolicy = DEFAULT_INBOUND_POLICY,
    cluster_networks: tuple[str, ...] = DEFAULT_CLUSTER_NETWORKS,
    root_namespace: str = DEFAULT_ISTIO_ROOT_NAMESPACE,
) -> PolicyResult:
    """The policy table of a validated snapshot, with the findings of compiling it."""
    diags: list[Diagnostic] = []
    networks = tuple(Network(cidr=c) for c in cluster_networks)
    table = PolicyTable(
        servers=linkerd_servers(resources, diags, cluster_networks=networks),
        workload_policies=istio_policies(resources, diags, root_namespace=root_namespace),
        peer_authentications=peer_authentications(resources, diags, root_namespace=root_namespace),
        request_authentications=request_authentications(
            resources, diags, root_namespace=root_namespace
        ),
        namespace_defaults=namespace_defaults(resources, diags),
        cluster_default=cluster_default,
        cluster_networks=networks,
    )
    server_first_warnings(resources, diags)
    return PolicyResult(table=table, diagnostics=tuple(sorted_diagnostics(diags)))
