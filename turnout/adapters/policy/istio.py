"""Istio's `security.istio.io` AuthorizationPolicy -> `WorkloadPolicy`s of the policy IR.

```
AuthorizationPolicy(namespace, selector | targetRefs[Service], action, rules)
  scope      root namespace -> mesh-wide (namespace None); selector -> its labels; a Service
             targetRef -> the Service's pod selector; neither -> every workload of the namespace
  action     ALLOW / DENY / AUDIT kept; CUSTOM -> DENY with `failed` (no ext_authz provider:
             what its rules match is denied, fail closed)
  rules[i]   -> Authorization istio/authorizationpolicy/<ns>/<name>/rule/<i>
                from[] -> Peer (principals, namespaces, serviceAccounts need mTLS), to[] ->
                Operation, when[] -> Condition
  no rules   -> no authorizations: an ALLOW policy allows nothing (`spec: {}` denies all),
             a DENY policy denies nothing; `rules: [{}]` is one rule matching everything
```

Semantics: SECURITY-REFERENCE §3.5 (`istio/api: security/v1beta1/authorization_policy.proto`).
Precedence (CUSTOM, then DENY, then ALLOW) is the decision's (`engine.authorization`). Pure.
"""

from __future__ import annotations

from turnout.engine.diagnostics import Diagnostic, warning
from turnout.engine.ir import SourceRef
from turnout.engine.ir_policy import (
    Action,
    Authorization,
    Condition,
    IdentityMatch,
    Network,
    Operation,
    Peer,
    PrincipalMatch,
    ServiceAccountIdentity,
    StringMatch,
    TLSRequirement,
    WorkloadPolicy,
    WorkloadSelector,
)
from turnout.engine.model import Loaded, Resources, Service
from turnout.engine.model.authz import IstioAuthorizationPolicy, IstioRule, IstioSource

CUSTOM_FAILED = (
    "CUSTOM needs an ext_authz provider and Turnout has none: what its rules match is denied"
)


def string_match(text: str) -> StringMatch:
    """Istio's wildcard forms: ``*`` present, ``abc*`` prefix, ``*abc`` suffix, else exact."""
    if text == "*":
        return StringMatch(kind="present")
    if text.endswith("*"):
        return StringMatch(kind="prefix", value=text[:-1])
    if text.startswith("*"):
        return StringMatch(kind="suffix", value=text[1:])
    return StringMatch(kind="exact", value=text)


def principal_match(text: str) -> IdentityMatch:
    """``<td>/ns/<ns>/sa/<sa>`` exactly -> a ServiceAccount identity; wildcards stay patterns."""
    parts = text.split("/")
    if "*" not in text and len(parts) == 5 and parts[1] == "ns" and parts[3] == "sa":
        return ServiceAccountIdentity(namespace=parts[2], name=parts[4], trust_domain=parts[0])
    return PrincipalMatch(match=string_match(text))


def service_account(text: str, namespace: str) -> ServiceAccountIdentity:
    """``<ns>/<sa>``, or ``<sa>`` in the policy's namespace."""
    ns, _, name = text.rpartition("/")
    return ServiceAccountIdentity(namespace=ns or namespace, name=name)


def peer_from(src: IstioSource, namespace: str) -> Peer:
    needs_identity = bool(src.principals or src.namespaces or src.service_accounts)
    tls: TLSRequirement = "authenticated" if needs_identity else "any"
    identities: tuple[IdentityMatch, ...] = (
        *(principal_match(p) for p in src.principals),
        *(service_account(s, namespace) for s in src.service_accounts),
    )
    if "*" in src.principals:  # any authenticated client, whatever else is listed
        identities = ()
    return Peer(
        tls=tls,
        identities=identities,
        not_identities=(
            *(principal_match(p) for p in src.not_principals),
            *(service_account(s, namespace) for s in src.not_service_accounts),
        ),
        namespaces=tuple(string_match(n) for n in src.namespaces),
        not_namespaces=tuple(string_match(n) for n in src.not_namespaces),
        networks=tuple(Network(cidr=b) for b in src.ip_blocks),
        not_networks=tuple(Network(cidr=b) for b in src.not_ip_blocks),
        request_principals=tuple(string_match(p) for p in src.request_principals),
        not_request_principals=tuple(string_match(p) for p in src.not_request_principals),
    )


def _ports(texts: list[str]) -> tuple[int, ...]:
    return tuple(int(p) for p in texts if p.isdigit())


def rule_authorization(
    rule: IstioRule, *, name: str, source: SourceRef, action: Action, failed: str | None
) -> Authorization:
    remote = [
        Condition(key="remote.ip", values=tuple(StringMatch(kind="exact", value=b) for b in blocks))
        for f in rule.from_
        for blocks in (f.source.remote_ip_blocks,)
        if blocks
    ]
    not_remote = [
        Condition(
            key="remote.ip", not_values=tuple(StringMatch(kind="exact", value=b) for b in blocks)
        )
        for f in rule.from_
        for blocks in (f.source.not_remote_ip_blocks,)
        if blocks
    ]
    operations = tuple(
        Operation(
            hosts=tuple(string_match(h) for h in t.operation.hosts),
            not_hosts=tuple(string_match(h) for h in t.operation.not_hosts),
            ports=_ports(t.operation.ports),
            not_ports=_ports(t.operation.not_ports),
            methods=tuple(string_match(m) for m in t.operation.methods),
            not_methods=tuple(string_match(m) for m in t.operation.not_methods),
            paths=tuple(string_match(p) for p in t.operation.paths),
            not_paths=tuple(string_match(p) for p in t.operation.not_paths),
        )
        for t in rule.to
    )
    conditions = tuple(
        Condition(
            key=c.key,
            values=tuple(_condition_value(c.key, v) for v in c.values),
            not_values=tuple(_condition_value(c.key, v) for v in c.not_values),
        )
        for c in rule.when
    )
    return Authorization(
        name=name,
        source=source,
        action=action,
        peers=tuple(peer_from(f.source, source.namespace) for f in rule.from_),
        operations=operations,
        conditions=(*conditions, *remote, *not_remote),
        failed=failed,
    )


def _condition_value(key: str, value: str) -> StringMatch:
    if key in ("source.ip", "remote.ip", "destination.port"):
        return StringMatch(kind="exact", value=value)
    return string_match(value)


def istio_policies(
    resources: Resources, diagnostics: list[Diagnostic], *, root_namespace: str
) -> tuple[WorkloadPolicy, ...]:
    services = {(s.obj.namespace, s.obj.name): s.obj for s in resources.of(Service)}
    out: list[WorkloadPolicy] = []
    loaded = sorted(
        resources.of(IstioAuthorizationPolicy), key=lambda o: (o.obj.namespace, o.obj.name)
    )
    for o in loaded:
        out.extend(_policy(o, services, diagnostics, root_namespace=root_namespace))
    return tuple(out)


def _policy(
    o: Loaded[IstioAuthorizationPolicy],
    services: dict[tuple[str, str], Service],
    diags: list[Diagnostic],
    *,
    root_namespace: str,
) -> list[WorkloadPolicy]:
    pol = o.obj
    ns, spec = pol.namespace, pol.spec
    name = f"istio/authorizationpolicy/{ns}/{pol.name}"
    source = SourceRef(kind="AuthorizationPolicy", namespace=ns, name=pol.name)
    action: Action = "DENY" if spec.action == "CUSTOM" else spec.action
    failed = CUSTOM_FAILED if spec.action == "CUSTOM" else None
    if failed:
        diags.append(
            warning("UnsupportedValue", f"action CUSTOM: {failed}", o.field("spec.action"))
        )
    authz = tuple(
        rule_authorization(
            rule,
            name=f"{name}/rule/{i}",
            source=SourceRef(kind=source.kind, namespace=ns, name=pol.name, section=f"rule/{i}"),
            action=action,
            failed=failed,
        )
        for i, rule in enumerate(spec.rules)
    )
    scope = None if ns == root_namespace else ns
    selectors: list[WorkloadSelector | None] = []
    refs = [*([spec.target_ref] if spec.target_ref else []), *spec.target_refs]
    for i, ref in enumerate(refs):
        svc = services.get((ref.namespace or ns, ref.name))
        if svc is None:
            msg = f"Service {ref.namespace or ns}/{ref.name} not found; the policy selects nothing through it"
            diags.append(warning("TargetNotFound", msg, o.field(f"spec.targetRefs[{i}]")))
            continue
        if not svc.spec.selector:
            msg = f"Service {ref.namespace or ns}/{ref.name} has no selector; the policy selects no workload through it"
            diags.append(warning("TargetNotFound", msg, o.field(f"spec.targetRefs[{i}]")))
            continue
        selectors.append(WorkloadSelector(labels=tuple(sorted(svc.spec.selector.items()))))
    if not refs:
        selector = spec.selector
        selectors.append(
            WorkloadSelector(labels=tuple(sorted(selector.match_labels.items())))
            if selector is not None
            else None
        )
    return [
        WorkloadPolicy(
            name=name if len(selectors) == 1 else f"{name}/target/{i}",
            source=source,
            namespace=scope,
            selector=sel,
            action=action,
            authorizations=authz,
        )
        for i, sel in enumerate(selectors)
    ]
