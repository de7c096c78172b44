"""Authorization kinds of the two dialects Turnout reads: Linkerd's `policy.linkerd.io` and
Istio's `security.istio.io`.

```
policy.linkerd.io/v1beta1   ServerV1beta1          podSelector, port, proxyProtocol
policy.linkerd.io/v1beta2   ServerV1beta2          + externalWorkloadSelector (one of the two)
policy.linkerd.io/v1beta3   Server                 + accessPolicy (default deny)
policy.linkerd.io/v1beta1   ServerAuthorization    server{name|selector}, client{...}
policy.linkerd.io/v1alpha1  LinkerdAuthorizationPolicy  targetRef, requiredAuthenticationRefs
policy.linkerd.io/v1alpha1  MeshTLSAuthentication  identities | identityRefs
policy.linkerd.io/v1alpha1  NetworkAuthentication  networks[{cidr, except}]
security.istio.io/v1        IstioAuthorizationPolicy    action, selector|targetRefs, rules
security.istio.io/v1        PeerAuthentication     selector, mtls.mode, portLevelMtls
security.istio.io/v1        RequestAuthentication  selector|targetRefs, jwtRules
```

The shapes restate `crds/policy.linkerd.io_*.yaml` and `crds/security.istio.io_*.yaml`. Both
dialects have a kind called `AuthorizationPolicy`; the classes carry the dialect in their
names and the kind stays the Kubernetes one. Which combinations make sense (exclusive fields,
supported target kinds) is `engine.validate.authz`; what they mean is `adapters/policy` and
`docs/policy.md`. Nothing here converts.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictInt, StrictStr, StringConstraints

from turnout.engine.model.base import (
    Bool,
    Group,
    K8sModel,
    Kind,
    LabelSelector,
    Name,
    Resource,
    Str,
)

LINKERD_POLICY_GROUP = "policy.linkerd.io"
ISTIO_SECURITY_GROUP = "security.istio.io"

DefaultPolicy = Literal[
    "all-unauthenticated",
    "all-authenticated",
    "cluster-unauthenticated",
    "cluster-authenticated",
    "deny",
    "audit",
]
"""Linkerd's default inbound policies (`config.linkerd.io/default-inbound-policy`)."""

ProxyProtocol = Literal["unknown", "HTTP/1", "HTTP/2", "gRPC", "opaque", "TLS"]

PortName = Annotated[StrictStr, StringConstraints(min_length=1, max_length=15)]
ServerPort = Annotated[StrictInt, Field(ge=1, le=65535)] | PortName
"""A port number or a container port name (int-or-string)."""

# --------------------------------------------------------------------------- Linkerd: Server


class ServerSpecV1beta1(K8sModel):
    pod_selector: LabelSelector
    port: ServerPort
    proxy_protocol: ProxyProtocol = "unknown"


class ServerSpecV1beta2(K8sModel):
    pod_selector: LabelSelector | None = None
    external_workload_selector: LabelSelector | None = None
    """Selects ExternalWorkloads; exactly one of the two selectors is set."""
    port: ServerPort
    proxy_protocol: ProxyProtocol = "unknown"


class ServerSpec(ServerSpecV1beta2):
    access_policy: DefaultPolicy = "deny"
    """What happens to traffic no authorization allows."""


class ServerV1beta1(Resource):
    """A Server of any version; the compiler reads it through `access_policy`/`selector`."""

    kind: Literal["Server"] = "Server"
    spec: ServerSpecV1beta1

    @property
    def access_policy(self) -> DefaultPolicy:
        """v1beta1/v1beta2 have no field: a Server denies what is not authorized."""
        return "deny"

    @property
    def selector(self) -> LabelSelector | None:
        """The pod selector (None: the Server selects ExternalWorkloads, never a pod)."""
        return self.spec.pod_selector


class ServerV1beta2(ServerV1beta1):
    spec: ServerSpecV1beta2  # type: ignore[assignment]


class Server(ServerV1beta2):
    """policy.linkerd.io/v1beta3, the storage version."""

    spec: ServerSpec

    @property
    def access_policy(self) -> DefaultPolicy:
        return self.spec.access_policy


# --------------------------------------------------------------------------- ServerAuthorization


class ServerSelector(K8sModel):
    name: Name | None = None
    selector: LabelSelector | None = None


class Network(K8sModel):
    cidr: Str
    except_: list[Str] = Field(default_factory=list, alias="except")


class ServiceAccountRef(K8sModel):
    name: Name
    namespace: Name | None = None
    """None: the ServerAuthorization's namespace."""


class MeshTLSClient(K8sModel):
    unauthenticated_tls: Bool = Field(default=False, alias="unauthenticatedTLS")
    identities: list[Str] = Field(default_factory=list)
    service_accounts: list[ServiceAccountRef] = Field(default_factory=list)


class ServerAuthorizationClient(K8sModel):
    networks: list[Network] | None = None
    """None: every network."""
    unauthenticated: Bool = False
    mesh_tls: MeshTLSClient | None = Field(default=None, alias="meshTLS")


class ServerAuthorizationSpec(K8sModel):
    server: ServerSelector
    client: ServerAuthorizationClient


class ServerAuthorization(Resource):
    kind: Literal["ServerAuthorization"] = "ServerAuthorization"
    spec: ServerAuthorizationSpec


# --------------------------------------------------------------------------- AuthorizationPolicy


class TargetRef(K8sModel):
    group: Group = ""
    kind: Kind
    name: Name


class AuthenticationRef(K8sModel):
    group: Group = ""
    kind: Kind
    name: Name
    namespace: Name | None = None
    """None: the policy's namespace."""


class LinkerdAuthorizationPolicySpec(K8sModel):
    target_ref: TargetRef
    required_authentication_refs: list[AuthenticationRef]


class LinkerdAuthorizationPolicy(Resource):
    """policy.linkerd.io/v1alpha1 AuthorizationPolicy."""

    kind: Literal["AuthorizationPolicy"] = "AuthorizationPolicy"
    spec: LinkerdAuthorizationPolicySpec


class IdentityRef(K8sModel):
    group: Group = ""
    kind: Kind
    name: Name | None = None
    """None: every object of that kind (every ServiceAccount of the namespace)."""
    namespace: Name | None = None
    """None: the authentication's namespace."""


class MeshTLSAuthenticationSpec(K8sModel):
    identities: list[Str] | None = Field(default=None, min_length=1)
    identity_refs: list[IdentityRef] | None = Field(default=None, min_length=1)


class MeshTLSAuthentication(Resource):
    kind: Literal["MeshTLSAuthentication"] = "MeshTLSAuthentication"
    spec: MeshTLSAuthenticationSpec


class NetworkAuthenticationSpec(K8sModel):
    networks: list[Network]


class NetworkAuthentication(Resource):
    kind: Literal["NetworkAuthentication"] = "NetworkAuthentication"
    spec: NetworkAuthenticationSpec


# --------------------------------------------------------------------------- Istio


class WorkloadSelector(K8sModel):
    match_labels: dict[str, str] = Field(default_factory=dict)


class IstioTargetRef(K8sModel):
    group: Group = ""
    kind: Kind
    name: Name
    namespace: Str | None = None


class IstioSource(K8sModel):
    principals: list[Str] = Field(default_factory=list)
    not_principals: list[Str] = Field(default_factory=list)
    request_principals: list[Str] = Field(default_factory=list)
    not_request_principals: list[Str] = Field(default_factory=list)
    namespaces: list[Str] = Field(default_factory=list)
    not_namespaces: list[Str] = Field(default_factory=list)
    service_accounts: list[Str] = Field(default_factory=list, max_length=16)
    not_service_accounts: list[Str] = Field(default_factory=list, max_length=16)
    ip_blocks: list[Str] = Field(default_factory=list)
    not_ip_blocks: list[Str] = Field(default_factory=list)
    remote_ip_blocks: list[Str] = Field(default_factory=list)
    not_remote_ip_blocks: list[Str] = Field(default_factory=list)


class IstioFrom(K8sModel):
    source: IstioSource = Field(default_factory=IstioSource)


class IstioOperation(K8sModel):
    hosts: list[Str] = Field(default_factory=list)
    not_hosts: list[Str] = Field(default_factory=list)
    ports: list[Str] = Field(default_factory=list)
    not_ports: list[Str] = Field(default_factory=list)
    methods: list[Str] = Field(default_factory=list)
    not_methods: list[Str] = Field(default_factory=list)
    paths: list[Str] = Field(default_factory=list)
    not_paths: list[Str] = Field(default_factory=list)


class IstioTo(K8sModel):
    operation: IstioOperation = Field(default_factory=IstioOperation)


class IstioCondition(K8sModel):
    key: Str
    values: list[Str] = Field(default_factory=list)
    not_values: list[Str] = Field(default_factory=list)


class IstioRule(K8sModel):
    from_: list[IstioFrom] = Field(default_factory=list, alias="from")
    to: list[IstioTo] = Field(default_factory=list)
    when: list[IstioCondition] = Field(default_factory=list)


class IstioProvider(K8sModel):
    name: Str | None = None


IstioAction = Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"]


class IstioAuthorizationPolicySpec(K8sModel):
    action: IstioAction = "ALLOW"
    provider: IstioProvider | None = None
    selector: WorkloadSelector | None = None
    """None (and no targetRefs): every workload of the namespace (of the mesh, in the root
    namespace)."""
    target_ref: IstioTargetRef | None = None
    target_refs: list[IstioTargetRef] = Field(default_factory=list, max_length=16)
    rules: list[IstioRule] = Field(default_factory=list)
    """[] (or absent): an ALLOW policy allows nothing; [{}]: one rule matching everything."""


class IstioAuthorizationPolicy(Resource):
    """security.istio.io/v1 (and v1beta1) AuthorizationPolicy."""

    kind: Literal["AuthorizationPolicy"] = "AuthorizationPolicy"
    spec: IstioAuthorizationPolicySpec = Field(default_factory=IstioAuthorizationPolicySpec)


MtlsMode = Literal["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]


class PeerMtls(K8sModel):
    mode: MtlsMode = "UNSET"


class PeerAuthenticationSpec(K8sModel):
    selector: WorkloadSelector | None = None
    mtls: PeerMtls | None = None
    port_level_mtls: dict[str, PeerMtls] | None = None
    """Workload port (a decimal string key) -> mode; only with a selector."""


class PeerAuthentication(Resource):
    kind: Literal["PeerAuthentication"] = "PeerAuthentication"
    spec: PeerAuthenticationSpec = Field(default_factory=PeerAuthenticationSpec)


class JWTHeader(K8sModel):
    name: Annotated[StrictStr, StringConstraints(min_length=1)]
    prefix: Str | None = None


class ClaimToHeader(K8sModel):
    header: Annotated[StrictStr, StringConstraints(min_length=1, pattern=r"^[-_A-Za-z0-9]+$")]
    claim: Annotated[StrictStr, StringConstraints(min_length=1)]


class JWTRule(K8sModel):
    issuer: Annotated[StrictStr, StringConstraints(min_length=1)]
    audiences: list[Str] = Field(default_factory=list)
    jwks_uri: (
        Annotated[StrictStr, StringConstraints(max_length=2048, pattern=r"^https?://")] | None
    ) = None
    jwks: Str | None = None
    from_headers: list[JWTHeader] = Field(default_factory=list)
    from_params: list[Str] = Field(default_factory=list)
    from_cookies: list[Str] = Field(default_factory=list)
    output_payload_to_header: Str | None = None
    forward_original_token: Bool = False
    output_claim_to_headers: list[ClaimToHeader] = Field(default_factory=list)
    timeout: Str | None = None
    space_delimited_claims: list[Str] = Field(default_factory=list, max_length=64)


class RequestAuthenticationSpec(K8sModel):
    selector: WorkloadSelector | None = None
    target_ref: IstioTargetRef | None = None
    target_refs: list[IstioTargetRef] = Field(default_factory=list, max_length=16)
    jwt_rules: list[JWTRule] = Field(default_factory=list, max_length=4096)


class RequestAuthentication(Resource):
    kind: Literal["RequestAuthentication"] = "RequestAuthentication"
    spec: RequestAuthenticationSpec = Field(default_factory=RequestAuthenticationSpec)
