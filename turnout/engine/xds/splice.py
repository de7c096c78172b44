"""RouteConfiguration wire bytes spliced from per-rule route bytes, cached by rule.

```
VirtualHost vhost ─ flatten_matches (precedence order) ─> (rule, match index) ...
   RuleBytes(rule) = per match: its Route records (routes.match_records)   cached by rule name,
                                                                            stamp: the ir.Rule
VirtualHost bytes   = VirtualHost(name, domains) bytes + the records in that order
RouteConfiguration  = RouteConfiguration(name) bytes + per vhost: 0x12 + len + vhost bytes
```

Protobuf's wire format is the fields in number order, a repeated message field being one
length-prefixed record per element, so bytes joined this way are what
`SerializeToString(deterministic=True)` of the whole message gives (tests/engine/xds/
test_cache.py checks every golden case). One changed route among 10,000 in one parent then
translates one rule and copies bytes for the rest, instead of building and serializing 10,000
Route messages again.

Each virtual host's records are also kept in their order (`_Spliced`), so the next version
of the host does not sort its 20,000 matches again: the records of the rules it no longer
has are dropped and those of its new rules inserted (`bisect`) where the order puts them.
`flatten_matches` orders by precedence, highest first, then IR order; the key (negated
precedence, the rule's position, the match index) says the same in one ascending tuple.
Rules both versions hold must be in the same order in both, and at most a quarter of the
rules may change; otherwise the host is sorted whole (tests/engine/xds/test_splice.py
checks random edits against a fresh splice).

Deliberately not here: which view a client gets (`listeners.view_of`), the Listener.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from google.protobuf import any_pb2

from turnout.engine import ir
from turnout.engine.xds.resources import ROUTE_CONFIGURATION_TYPE
from turnout.engine.xds.routes import flatten_matches, match_records, rule_route
from turnout.engine.xds.translator import route_clusters
from turnout.engine.xds.wire import INVALID_CLUSTER, varint

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


_Entry = tuple[tuple[int, ...], ir.Rule, int, bytes, bool]
"""One route record of a virtual host: (negated precedence, rule, match index, the match's
framed Route records, whether they use the invalid cluster)."""


@dataclass(slots=True)
class _Spliced:
    """A virtual host's records in `flatten_matches` order, kept for its next version."""

    order: tuple[ir.Rule, ...]
    """The host's rules, in its order, of the version these entries are for."""
    rules: dict[int, ir.Rule]
    """The same rules by id."""
    entries: list[_Entry]
    invalid: int
    """Entries whose records use the invalid cluster."""


def _negated(match: ir.Match) -> tuple[int, ...]:
    return _negate(ir.match_precedence(match))


@lru_cache(maxsize=1024)  # a few distinct precedences: 20,000 entries share them
def _negate(precedence: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(-n for n in precedence)


@dataclass(slots=True)
class RouteBytesCache:
    """RuleBytes by rule name; a rule equal to the cached one (identity first) hits. Each
    virtual host's records are kept in order (`_Spliced`), so a version that replaces a few
    rules orders only their matches (module docstring)."""

    _rules: dict[str, RuleBytes] = field(default_factory=dict)
    _hosts: dict[tuple[str, str], _Spliced] = field(default_factory=dict)
    packed_bytes: int = 0
    """Wire bytes of the RouteConfigurations spliced so far (a big one leaves as much freed
    heap behind: the caller may give it back, `engine.memory`)."""

    def rule(self, rule: ir.Rule) -> RuleBytes:
        found = self._rules.get(rule.name)
        if found is not None and (found.rule is rule or found.rule == rule):
            return found
        made = self._rules[rule.name] = rule_bytes(rule)
        return made

    def forget_except(self, names: set[str], route_configs: set[str]) -> None:
        """Keep the rules named in `names` and the hosts of the RouteConfigurations named in
        `route_configs`."""
        for name in [n for n in self._rules if n not in names]:
            del self._rules[name]
        for key in [k for k in self._hosts if k[0] not in route_configs]:
            del self._hosts[key]

    def route_configuration(
        self, name: str, vhosts: Sequence[ir.VirtualHost]
    ) -> tuple[any_pb2.Any, bool]:
        """The packed RouteConfiguration `name` with one VirtualHost per vhost, and whether
        a route points at the invalid cluster."""
        out = [route_pb2.RouteConfiguration(name=name).SerializeToString(deterministic=True)]
        invalid = False
        for vhost in vhosts:
            head = rc.VirtualHost(name=vhost.name, domains=list(vhost.domains))
            host = self._host(name, vhost)
            records = [head.SerializeToString(deterministic=True), *(e[3] for e in host.entries)]
            size = sum(map(len, records))
            out += (_CONFIG_VHOSTS, varint(size), *records)
            invalid = invalid or host.invalid > 0
        value = b"".join(out)
        self.packed_bytes += len(value)
        return any_pb2.Any(type_url=ROUTE_CONFIGURATION_TYPE, value=value), invalid

    def _host(self, config: str, vhost: ir.VirtualHost) -> _Spliced:
        key = (config, vhost.name)
        rules = {id(r): r for r in vhost.rules}
        last = self._hosts.get(key)
        host = None
        if last is not None and len(rules) == len(vhost.rules):
            host = self._update(last, vhost, rules)
        if host is None:
            host = self._whole(vhost, rules)
        self._hosts[key] = host
        return host

    def _whole(self, vhost: ir.VirtualHost, rules: dict[int, ir.Rule]) -> _Spliced:
        made = {id(r): self.rule(r) for r in vhost.rules}
        match_index = {id(m): i for r in vhost.rules for i, m in enumerate(r.matches)}
        entries: list[_Entry] = []
        for rule, match in flatten_matches(vhost):
            rule_made, k = made[id(rule)], match_index[id(match)]
            entries.append((_negated(match), rule, k, rule_made.matches[k], rule_made.uses_invalid))
        return _Spliced(vhost.rules, rules, entries, sum(e[4] for e in entries))

    def _update(
        self, last: _Spliced, vhost: ir.VirtualHost, rules: dict[int, ir.Rule]
    ) -> _Spliced | None:
        """`last` with the records of the rules `vhost` replaced, added or dropped; None
        when the whole host must be ordered again: more than a quarter of the rules changed,
        or the rules both versions hold are not in the same order in both."""
        if last.order is vhost.rules:
            return last
        before = last.rules
        added = [r for r in vhost.rules if before.get(id(r)) is not r]
        gone = {i for i, r in before.items() if rules.get(i) is not r}
        if 4 * (len(added) + len(gone)) > len(vhost.rules):
            return None
        kept_now = [r for r in vhost.rules if before.get(id(r)) is r]
        kept_then = [r for r in last.order if rules.get(id(r)) is r]
        if len(kept_now) != len(kept_then) or any(
            a is not b for a, b in zip(kept_now, kept_then, strict=True)
        ):
            return None
        entries = [e for e in last.entries if id(e[1]) not in gone]
        position = {id(r): i for i, r in enumerate(vhost.rules)}

        def key(e: _Entry) -> tuple[tuple[int, ...], int, int]:
            return (e[0], position[id(e[1])], e[2])

        for rule in added:
            made = self.rule(rule)
            for k, match in enumerate(rule.matches):
                entry = (_negated(match), rule, k, made.matches[k], made.uses_invalid)
                bisect.insort(entries, entry, key=key)
        return _Spliced(vhost.rules, rules, entries, sum(e[4] for e in entries))
