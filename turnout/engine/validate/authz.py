"""Built-in rules for the authorization kinds (Linkerd `policy.linkerd.io`, Istio
`security.istio.io`): what the CRDs' `oneOf`/CEL rules and the upstream admission webhooks
refuse, restated so that the Kubernetes source (which has no CRD files) refuses it too.

```
Server (v1beta2+)       exactly one of podSelector / externalWorkloadSelector
ServerAuthorization     server: exactly one of name / selector; client: exactly one of
                        unauthenticated / meshTLS; meshTLS: unauthenticatedTLS exclusive with
                        identities/serviceAccounts, and something set; networks are CIDRs
AuthorizationPolicy     targetRef: Server, HTTPRoute, GRPCRoute, or its own Namespace;
  (Linkerd)             requiredAuthenticationRefs: MeshTLSAuthentication, NetworkAuthentication,
                        ServiceAccount; at most one identity ref, at most one network ref
MeshTLSAuthentication   exactly one of identities / identityRefs; refs: ServiceAccount, Namespace
NetworkAuthentication   >= 1 network; every `except` inside its cidr and not all of it
AuthorizationPolicy     provider exactly with CUSTOM; selector / targetRefs exclusive; targetRef
  (Istio)               kind Service; serviceAccounts not with principals/namespaces; ipBlocks
                        are CIDRs or addresses; `when` keys Turnout knows
```

The Linkerd webhook's rules come from `policy-controller/runtime/src/admission.rs`
(SECURITY-REFERENCE §2.2). Every finding is an error at the field the user wrote.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from turnout.engine.diagnostics import Diagnostic, SourcePos, error
from turnout.engine.model.authz import (
    LINKERD_POLICY_GROUP,
    IstioAuthorizationPolicy,
    LinkerdAuthorizationPolicy,
    MeshTLSAuthentication,
    Network,
    NetworkAuthentication,
    ServerAuthorization,
    ServerV1beta1,
    ServerV1beta2,
)
from turnout.engine.model.kinds import Loaded

INVALID = "FieldValueInvalid"
UNSUPPORTED = "UnsupportedValue"
GW = "gateway.networking.k8s.io"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LINKERD_TARGETS = {
    (LINKERD_POLICY_GROUP, "Server"),
    (GW, "HTTPRoute"),
    (LINKERD_POLICY_GROUP, "HTTPRoute"),
    (GW, "GRPCRoute"),
    ("", "Namespace"),
    ("core", "Namespace"),
}
AUTHENTICATIONS = {
    (LINKERD_POLICY_GROUP, "MeshTLSAuthentication"),
    (LINKERD_POLICY_GROUP, "NetworkAuthentication"),
    ("", "ServiceAccount"),
    ("core", "ServiceAccount"),
}
ISTIO_TARGETS = {("", "Service"), ("core", "Service")}

WHEN_KEYS = re.compile(
    r"^(source\.ip|remote\.ip|source\.namespace|source\.principal|destination\.port"
    r"|request\.headers\[[^\]]+\]|request\.auth\.(principal|audiences|presenter|claims(\[[^\]]+\])+))$"
)
"""The `when` keys Turnout compiles (Istio's conditions page); the others are refused rather
than silently dropped, which would widen an ALLOW or narrow a DENY."""


def parse_network(text: str) -> IPNetwork | None:
    """A CIDR (host bits allowed, as Linkerd's parser) or a bare address; None if neither."""
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def network_rules(networks: Sequence[Network], pos: SourcePos) -> list[Diagnostic]:
    """Each network a CIDR; each `except` a CIDR inside it that does not cover all of it."""
    diags: list[Diagnostic] = []
    for i, net in enumerate(networks):
        here = pos.child(f"[{i}]")
        cidr = parse_network(net.cidr)
        if cidr is None:
            diags.append(
                error(INVALID, f'Invalid value: "{net.cidr}": not a CIDR', here.child("cidr"))
            )
            continue
        for j, text in enumerate(net.except_):
            at = here.child(f"except[{j}]")
            exc = parse_network(text)
            if exc is None:
                diags.append(error(INVALID, f'Invalid value: "{text}": not a CIDR', at))
            elif exc.version != cidr.version or not exc.subnet_of(cidr):  # type: ignore[arg-type]
                diags.append(error(INVALID, f"{text} is not inside {net.cidr}", at))
            elif exc == cidr:
                diags.append(error(INVALID, f"{text} excludes all of {net.cidr}", at))
    return diags


def validate_server(loaded: Loaded[ServerV1beta1]) -> list[Diagnostic]:
    if not isinstance(loaded.obj, ServerV1beta2):
        return []  # v1beta1: podSelector is required by the schema
    pods = loaded.obj.spec.pod_selector is not None
    external = loaded.obj.spec.external_workload_selector is not None
    if pods == external:
        return [
            error(
                INVALID,
                "exactly one of podSelector and externalWorkloadSelector must be set",
                loaded.field("spec"),
            )
        ]
    return []


def validate_serverauthorization(loaded: Loaded[ServerAuthorization]) -> list[Diagnostic]:
    spec = loaded.obj.spec
    diags: list[Diagnostic] = []
    if (spec.server.name is None) == (spec.server.selector is None):
        msg = "exactly one of server.name and server.selector must be set"
        diags.append(error(INVALID, msg, loaded.field("spec.server")))
    client = spec.client
    pos = loaded.field("spec.client")
    if client.unauthenticated == (client.mesh_tls is not None):
        msg = "exactly one of unauthenticated and meshTLS must be set"
        diags.append(error(INVALID, msg, pos))
    tls = client.mesh_tls
    if tls is not None:
        named = bool(tls.identities or tls.service_accounts)
        if tls.unauthenticated_tls and named:
            msg = "unauthenticatedTLS must not be set with identities or serviceAccounts"
            diags.append(error(INVALID, msg, pos.child("meshTLS")))
        elif not tls.unauthenticated_tls and not named:
            msg = "meshTLS must set unauthenticatedTLS, identities or serviceAccounts"
            diags.append(error(INVALID, msg, pos.child("meshTLS")))
    diags += network_rules(client.networks or [], pos.child("networks"))
    return diags


def validate_linkerd_authorizationpolicy(
    loaded: Loaded[LinkerdAuthorizationPolicy],
) -> list[Diagnostic]:
    obj = loaded.obj
    target = obj.spec.target_ref
    diags: list[Diagnostic] = []
    at = loaded.field("spec.targetRef")
    if (target.group, target.kind) not in LINKERD_TARGETS:
        msg = (
            f"targetRef {target.group or 'core'}/{target.kind} is not supported "
            "(Server, HTTPRoute, GRPCRoute or Namespace)"
        )
        diags.append(error(UNSUPPORTED, msg, at.child("kind")))
    elif target.kind == "Namespace" and target.name != obj.namespace:
        msg = f"a Namespace target must be the policy's own namespace ({obj.namespace})"
        diags.append(error(INVALID, msg, at.child("name")))
    counts = {"identity": 0, "MeshTLSAuthentication": 0, "ServiceAccount": 0, "network": 0}
    for i, ref in enumerate(obj.spec.required_authentication_refs):
        here = loaded.field(f"spec.requiredAuthenticationRefs[{i}]")
        if (ref.group, ref.kind) not in AUTHENTICATIONS:
            msg = (
                f"authentication {ref.group or 'core'}/{ref.kind} is not supported "
                "(MeshTLSAuthentication, NetworkAuthentication or ServiceAccount)"
            )
            diags.append(error(UNSUPPORTED, msg, here.child("kind")))
            continue
        if ref.kind == "NetworkAuthentication":
            counts["network"] += 1
            if counts["network"] > 1:
                diags.append(error(INVALID, "at most one NetworkAuthentication", here))
        else:
            counts["identity"] += 1
            counts[ref.kind] += 1
            if counts[ref.kind] > 1:
                diags.append(error(INVALID, f"at most one {ref.kind}", here))
            elif counts["identity"] > 1:
                msg = "MeshTLSAuthentication and ServiceAccount must not be used together"
                diags.append(error("FieldValueForbidden", msg, here))
    return diags


def validate_meshtlsauthentication(loaded: Loaded[MeshTLSAuthentication]) -> list[Diagnostic]:
    spec = loaded.obj.spec
    if (spec.identities is None) == (spec.identity_refs is None):
        msg = "exactly one of identities and identityRefs must be set"
        return [error(INVALID, msg, loaded.field("spec"))]
    diags: list[Diagnostic] = []
    for i, ref in enumerate(spec.identity_refs or []):
        here = loaded.field(f"spec.identityRefs[{i}]")
        if ref.group not in ("", "core") or ref.kind not in ("ServiceAccount", "Namespace"):
            msg = f"identityRef {ref.group or 'core'}/{ref.kind} is not supported (ServiceAccount or Namespace)"
            diags.append(error(UNSUPPORTED, msg, here.child("kind")))
        elif ref.kind == "Namespace" and ref.namespace is not None:
            msg = "a Namespace is cluster-scoped: namespace must not be set"
            diags.append(error("FieldValueForbidden", msg, here.child("namespace")))
    return diags


def validate_networkauthentication(loaded: Loaded[NetworkAuthentication]) -> list[Diagnostic]:
    networks = loaded.obj.spec.networks
    pos = loaded.field("spec.networks")
    if not networks:
        return [error(INVALID, "at least one network is required", pos)]
    return network_rules(networks, pos)


def validate_istio_authorizationpolicy(
    loaded: Loaded[IstioAuthorizationPolicy],
) -> list[Diagnostic]:
    spec = loaded.obj.spec
    diags: list[Diagnostic] = []
    pos = loaded.field("spec")
    if (spec.action == "CUSTOM") != (spec.provider is not None):
        msg = "provider must be set exactly when action is CUSTOM"
        diags.append(error(INVALID, msg, pos.child("provider")))
    refs = [*([spec.target_ref] if spec.target_ref else []), *spec.target_refs]
    if spec.selector is not None and refs:
        diags.append(error(INVALID, "only one of targetRefs or selector can be set", pos))
    for i, ref in enumerate(refs):
        if (ref.group, ref.kind) not in ISTIO_TARGETS:
            msg = (
                f"targetRef {ref.group or 'core'}/{ref.kind} is not supported by Turnout (Service)"
            )
            diags.append(error(UNSUPPORTED, msg, pos.child(f"targetRefs[{i}].kind")))
    for r, rule in enumerate(spec.rules):
        for f, frm in enumerate(rule.from_):
            src = frm.source
            at = pos.child(f"rules[{r}].from[{f}].source")
            if (src.service_accounts or src.not_service_accounts) and (
                src.principals or src.not_principals or src.namespaces or src.not_namespaces
            ):
                msg = "Cannot set serviceAccounts with namespaces or principals"
                diags.append(error(INVALID, msg, at))
            for field, values in (
                ("ipBlocks", src.ip_blocks),
                ("notIpBlocks", src.not_ip_blocks),
                ("remoteIpBlocks", src.remote_ip_blocks),
                ("notRemoteIpBlocks", src.not_remote_ip_blocks),
            ):
                for k, text in enumerate(values):
                    if parse_network(text) is None:
                        msg = f'Invalid value: "{text}": not an IP address or CIDR'
                        diags.append(error(INVALID, msg, at.child(f"{field}[{k}]")))
        for t, to in enumerate(rule.to):
            op = to.operation
            for field, ports in (("ports", op.ports), ("notPorts", op.not_ports)):
                for k, text in enumerate(ports):
                    if not (text.isdigit() and 1 <= int(text) <= 65535):
                        msg = f'Invalid value: "{text}": must be a port number (1-65535)'
                        at = pos.child(f"rules[{r}].to[{t}].operation.{field}[{k}]")
                        diags.append(error(INVALID, msg, at))
        for w, cond in enumerate(rule.when):
            at = pos.child(f"rules[{r}].when[{w}]")
            if not WHEN_KEYS.match(cond.key):
                msg = f'condition key "{cond.key}" is not supported by Turnout'
                diags.append(error(UNSUPPORTED, msg, at.child("key")))
            diags += _condition_values(cond.key, cond.values, at.child("values"))
            diags += _condition_values(cond.key, cond.not_values, at.child("notValues"))
    return diags


def _condition_values(key: str, values: Sequence[str], pos: SourcePos) -> list[Diagnostic]:
    """IP keys take addresses or CIDRs; `destination.port` takes port numbers."""
    diags: list[Diagnostic] = []
    for i, text in enumerate(values):
        if key in ("source.ip", "remote.ip") and parse_network(text) is None:
            msg = f'Invalid value: "{text}": not an IP address or CIDR'
            diags.append(error(INVALID, msg, pos.child(f"[{i}]")))
        elif key == "destination.port" and not (text.isdigit() and 1 <= int(text) <= 65535):
            msg = f'Invalid value: "{text}": must be a port number (1-65535)'
            diags.append(error(INVALID, msg, pos.child(f"[{i}]")))
    return diags
