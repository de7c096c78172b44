"""RouteConfiguration wire bytes spliced from per-rule route bytes, cached by rule.

```
VirtualHost vhost ─ flatten_matches (precedence order) ─> (rule, match index) ...
   RuleBytes(rule) = per match: b"".join(0x1a + len + Route bytes)   cached by rule name,
                                 (routes.fill_virtual_host's routes)  stamp: the ir.Rule
VirtualHost bytes   = VirtualHost(name, domains) bytes + the chunks in that order
RouteConfiguration  = RouteConfiguration(name) bytes + per vhost: 0x12 + len + vhost bytes
```

Protobuf's wire format is the fields in number order, a repeated message field being one
length-prefixed record per element, so bytes joined this way are what
`SerializeToString(deterministic=True)` of the whole message gives (tests/engine/xds/
test_cache.py checks every golden case). One changed route among 10,000 in one parent then
translates one rule and copies bytes for the rest, instead of building and serializing 10,000
Route messages again.

Deliberately not here: which view a client gets (`listeners.view_of`), the Listener.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from google.protobuf import any_pb2

from turnout.engine import ir
from turnout.engine.xds.resources import ROUTE_CONFIGURATION_TYPE
from turnout.engine.xds.routes import flatten_matches, match_records, rule_route
from turnout.engine.xds.translator import route_clusters
from turnout.engine.xds.wire import INVALID_CLUSTER, framed

_CONFIG_VHOSTS = b"\x12"  # RouteConfiguration.virtual_hosts = 2, length-delimited


@dataclass(frozen=True, slots=True)
class RuleBytes:
    rule: ir.Rule
    matches: tuple[bytes, ...]
    """Per match of the rule: its framed Route records (one or two path matchers)."""
    uses_invalid: bool


def rule_bytes(rule: ir.Rule) -> RuleBytes:
    template = rule_route(rule)
    invalid = bool(rule.matches) and INVALID_CLUSTER in route_clusters(template)
    return RuleBytes(rule=rule, matches=match_records(rule, template), uses_invalid=invalid)


@dataclass(slots=True)
class RouteBytesCache:
    """RuleBytes by rule name; a rule equal to the cached one (identity first) hits."""

    _rules: dict[str, RuleBytes] = field(default_factory=dict)
    packed_bytes: int = 0
    """Wire bytes of the RouteConfigurations spliced so far (a big one leaves as much freed
    heap behind: the caller may give it back, `engine.memory`)."""

    def rule(self, rule: ir.Rule) -> RuleBytes:
        found = self._rules.get(rule.name)
        if found is not None and (found.rule is rule or found.rule == rule):
            return found
        made = self._rules[rule.name] = rule_bytes(rule)
        return made

    def forget_except(self, names: set[str]) -> None:
        for name in [n for n in self._rules if n not in names]:
            del self._rules[name]

    def route_configuration(
        self, name: str, vhosts: Sequence[ir.VirtualHost]
    ) -> tuple[any_pb2.Any, bool]:
        """The packed RouteConfiguration `name` with one VirtualHost per vhost, and whether
        a route points at the invalid cluster."""
        out = [route_pb2.RouteConfiguration(name=name).SerializeToString(deterministic=True)]
        invalid = False
        for vhost in vhosts:
            head = rc.VirtualHost(name=vhost.name, domains=list(vhost.domains))
            parts = [head.SerializeToString(deterministic=True)]
            index = {id(r): self.rule(r) for r in vhost.rules}
            match_index = {id(m): i for r in vhost.rules for i, m in enumerate(r.matches)}
            for rule, match in flatten_matches(vhost):
                cached = index[id(rule)]
                parts.append(cached.matches[match_index[id(match)]])
                invalid = invalid or cached.uses_invalid
            out.append(framed(_CONFIG_VHOSTS, b"".join(parts)))
        value = b"".join(out)
        self.packed_bytes += len(value)
        return any_pb2.Any(type_url=ROUTE_CONFIGURATION_TYPE, value=value), invalid
