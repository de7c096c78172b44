"""Built-in rules for GRPCRoute and for the parentRefs of the L4 route kinds.

```
validate_grpcroute(Loaded[GRPCRoute], channel)
  spec.parentRefs                     sectionName (and exp: port) consistent and unique
  spec.rules                          total matches <= 128; (exp) rule names unique
  spec.rules[i].matches[j].method     service and/or method set; their character rules
  spec.rules[i].matches[j].headers    keyed by name
  spec.rules[i].filters, .backendRefs[k](.filters)   see `validate.filters`
  spec.rules[i].sessionPersistence    (exp) five CEL rules
validate_l4route(Loaded[TLSRoute|TCPRoute|UDPRoute])   parentRefs rules only
```

GRPCRoute filters are the four types gRPC supports; the union rules use
`GRPC_FILTER_MEMBERS`. TLSRoute hostname rules (no IPs, wildcard placement) are not
restated: Turnout does not route TLSRoute; `--crds` checks them.
"""

from __future__ import annotations

import re

from turnout.engine.diagnostics import Diagnostic, SourcePos
from turnout.engine.model.gateway import TCPRoute, TLSRoute, TLSRouteV1alpha2, UDPRoute
from turnout.engine.model.grpcroute import GRPC_FILTER_MEMBERS, GRPCMethodMatch, GRPCRoute
from turnout.engine.model.kinds import Loaded
from turnout.engine.validate.common import (
    Channel,
    backend_port_rule,
    parent_ref_rules,
    rule_error,
    rules_list_rules,
    session_persistence_rules,
    unique_names,
)
from turnout.engine.validate.filters import filter_list_rules

SERVICE_OR_METHOD = "One or both of 'service' or 'method' must be specified"
_SERVICE = re.compile(r"^\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$", re.IGNORECASE)
_METHOD = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*$")
SERVICE_CHARS = (
    r"service must only contain valid characters (matching "
    r"^(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$)"
)
METHOD_CHARS = "method must only contain valid characters (matching ^[A-Za-z_][A-Za-z_0-9]*$)"


def validate_grpcroute(loaded: Loaded[GRPCRoute], *, channel: Channel) -> list[Diagnostic]:
    """Every built-in rule for one GRPCRoute."""
    spec = loaded.obj.spec
    out = parent_ref_rules(spec.parent_refs, loaded.field("spec.parentRefs"), channel=channel)
    out += rules_list_rules(
        [len(r.matches) for r in spec.rules],
        [r.name for r in spec.rules],
        loaded.field("spec.rules"),
        channel=channel,
    )
    for i, rule in enumerate(spec.rules):
        pos = loaded.field(f"spec.rules[{i}]")
        for j, match in enumerate(rule.matches):
            mpos = pos.child(f"matches[{j}]")
            if match.method is not None:
                out += method_match_rules(match.method, mpos.child("method"))
            out += unique_names(match.headers, lambda h: h.name, mpos.child("headers"))
        out += filter_list_rules(rule.filters, pos.child("filters"), members=GRPC_FILTER_MEMBERS)
        for k, ref in enumerate(rule.backend_refs):
            bpos = pos.child(f"backendRefs[{k}]")
            out += backend_port_rule(ref, bpos)
            out += filter_list_rules(
                ref.filters, bpos.child("filters"), members=GRPC_FILTER_MEMBERS
            )
        out += session_persistence_rules(rule.session_persistence, pos.child("sessionPersistence"))
    return out


def method_match_rules(m: GRPCMethodMatch, pos: SourcePos) -> list[Diagnostic]:
    """`type` always has a value after defaulting (Exact), so one of service/method is needed;
    the character rules apply to Exact matches only."""
    out: list[Diagnostic] = []
    if m.service is None and m.method is None:
        out.append(rule_error(SERVICE_OR_METHOD, pos))
    if m.type == "Exact" and m.service is not None and not _SERVICE.fullmatch(m.service):
        out.append(rule_error(SERVICE_CHARS, pos))
    if m.type == "Exact" and m.method is not None and not _METHOD.fullmatch(m.method):
        out.append(rule_error(METHOD_CHARS, pos))
    return out


L4Route = TLSRoute | TLSRouteV1alpha2 | TCPRoute | UDPRoute


def validate_l4route(loaded: Loaded[L4Route], *, channel: Channel) -> list[Diagnostic]:
    """TLSRoute, TCPRoute, UDPRoute: parentRefs rules, (exp) unique rule names, backendRef ports."""
    spec = loaded.obj.spec
    out = parent_ref_rules(spec.parent_refs, loaded.field("spec.parentRefs"), channel=channel)
    out += rules_list_rules(
        [0] * len(spec.rules),
        [r.name for r in spec.rules],
        loaded.field("spec.rules"),
        channel=channel,
    )
    for i, rule in enumerate(spec.rules):
        for k, ref in enumerate(rule.backend_refs):
            out += backend_port_rule(ref, loaded.field(f"spec.rules[{i}].backendRefs[{k}]"))
    return out
