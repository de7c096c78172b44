"""Istio's PeerAuthentication and RequestAuthentication -> `PeerAuthn` / `RequestAuthn`.

```
PeerAuthentication(namespace, selector, mtls.mode, portLevelMtls)
  scope        root namespace without selector -> mesh-wide (namespace None); a selector -> its
               labels in the policy's namespace; neither -> the namespace
  mode         UNSET (or no `mtls`) -> None (inherit); DISABLE / PERMISSIVE / STRICT kept
  port_modes   portLevelMtls as (port, mode) in port order; only with a selector (Istio ignores
               them otherwise: a warning here)
  created      metadata.creationTimestamp (RFC 3339, UTC) or "": the tie-break
RequestAuthentication(namespace, selector | targetRefs[Service], jwtRules)
  jwtRules[i]  -> JwtRule: fromHeaders -> header locations (name lower-cased, exact prefix),
               fromParams -> param locations, outputClaimToHeaders -> (header, claim)
```

Semantics: SECURITY-REFERENCE §3.1 and §3.4. The proxy picks the PeerAuthn that wins
(`PeerAuthn`'s docstring) and applies every RequestAuthn that selects the workload. Pure.
"""

from __future__ import annotations

from datetime import UTC

from turnout.engine.diagnostics import Diagnostic, warning
from turnout.engine.ir import SourceRef
from turnout.engine.ir_policy import (
    JwtLocation,
    JwtRule,
    MtlsMode,
    PeerAuthn,
    RequestAuthn,
    WorkloadSelector,
)
from turnout.engine.model import Loaded, Resources, Service
from turnout.engine.model.authz import (
    JWTRule,
    PeerAuthentication,
    PeerMtls,
    RequestAuthentication,
)
from turnout.engine.model.authz import WorkloadSelector as ModelSelector
from turnout.engine.model.base import Resource


def _mode(mtls: PeerMtls | None) -> MtlsMode | None:
    if mtls is None or mtls.mode == "UNSET":
        return None
    return mtls.mode


def _selector(sel: ModelSelector | None) -> WorkloadSelector | None:
    if sel is None:
        return None
    return WorkloadSelector(labels=tuple(sorted(sel.match_labels.items())))


def created(obj: Resource) -> str:
    """``metadata.creationTimestamp`` in UTC RFC 3339 (``2024-01-02T03:04:05Z``), "" if absent."""
    ts = obj.metadata.creation_timestamp
    if ts is None:
        return ""
    utc = ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def peer_authentications(
    resources: Resources, diags: list[Diagnostic], *, root_namespace: str
) -> tuple[PeerAuthn, ...]:
    loaded = sorted(resources.of(PeerAuthentication), key=lambda o: (o.obj.namespace, o.obj.name))
    return tuple(_peer(o, diags, root_namespace=root_namespace) for o in loaded)


def _peer(
    o: Loaded[PeerAuthentication], diags: list[Diagnostic], *, root_namespace: str
) -> PeerAuthn:
    pa, spec = o.obj, o.obj.spec
    selector = _selector(spec.selector)
    ports: list[tuple[int, MtlsMode | None]] = []
    if spec.port_level_mtls and selector is None:
        msg = "portLevelMtls needs a selector; Istio ignores it on a namespace or mesh-wide policy"
        diags.append(warning("UnsupportedValue", msg, o.field("spec.portLevelMtls")))
    elif spec.port_level_mtls:
        ports = sorted(
            (int(k), _mode(v)) for k, v in spec.port_level_mtls.items() if k.strip().isdigit()
        )
    scope = None if pa.namespace == root_namespace and selector is None else pa.namespace
    return PeerAuthn(
        name=f"istio/peerauthentication/{pa.namespace}/{pa.name}",
        source=SourceRef(kind="PeerAuthentication", namespace=pa.namespace, name=pa.name),
        namespace=scope,
        selector=selector,
        mode=_mode(spec.mtls),
        port_modes=tuple(ports),
        created=created(pa),
    )


def jwt_rule(rule: JWTRule) -> JwtRule:
    locations = (
        *(JwtLocation(header=h.name.lower(), prefix=h.prefix or "") for h in rule.from_headers),
        *(JwtLocation(param=p) for p in rule.from_params),
    )
    return JwtRule(
        issuer=rule.issuer,
        audiences=tuple(rule.audiences),
        jwks_uri=rule.jwks_uri,
        jwks=rule.jwks,
        locations=locations,
        output_payload_to_header=rule.output_payload_to_header,
        output_claim_to_headers=tuple(
            (c.header.lower(), c.claim) for c in rule.output_claim_to_headers
        ),
        forward_original_token=rule.forward_original_token,
    )


def request_authentications(
    resources: Resources, diags: list[Diagnostic], *, root_namespace: str
) -> tuple[RequestAuthn, ...]:
    services = {(s.obj.namespace, s.obj.name): s.obj for s in resources.of(Service)}
    loaded = sorted(
        resources.of(RequestAuthentication), key=lambda o: (o.obj.namespace, o.obj.name)
    )
    out: list[RequestAuthn] = []
    for o in loaded:
        out.extend(_request(o, services, diags, root_namespace=root_namespace))
    return tuple(out)


def _request(
    o: Loaded[RequestAuthentication],
    services: dict[tuple[str, str], Service],
    diags: list[Diagnostic],
    *,
    root_namespace: str,
) -> list[RequestAuthn]:
    ra, spec = o.obj, o.obj.spec
    ns = ra.namespace
    name = f"istio/requestauthentication/{ns}/{ra.name}"
    source = SourceRef(kind="RequestAuthentication", namespace=ns, name=ra.name)
    rules = tuple(jwt_rule(r) for r in spec.jwt_rules)
    refs = [*([spec.target_ref] if spec.target_ref else []), *spec.target_refs]
    selectors: list[WorkloadSelector | None] = []
    for i, ref in enumerate(refs):
        svc = services.get((ref.namespace or ns, ref.name))
        where = o.field(f"spec.targetRefs[{i}]")
        if ref.kind != "Service":
            msg = f"targetRef kind {ref.kind} is not supported (only Service); it selects nothing"
            diags.append(warning("UnsupportedValue", msg, where))
        elif svc is None or not svc.spec.selector:
            why = "not found" if svc is None else "has no selector"
            msg = f"Service {ref.namespace or ns}/{ref.name} {why}; the policy selects nothing through it"
            diags.append(warning("TargetNotFound", msg, where))
        else:
            selectors.append(WorkloadSelector(labels=tuple(sorted(svc.spec.selector.items()))))
    if not refs:
        selectors.append(_selector(spec.selector))
    return [
        RequestAuthn(
            name=name if len(selectors) == 1 else f"{name}/target/{i}",
            source=source,
            namespace=None if ns == root_namespace and sel is None else ns,
            selector=sel,
            rules=rules,
        )
        for i, sel in enumerate(selectors)
    ]
