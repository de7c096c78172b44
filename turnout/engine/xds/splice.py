"""RouteConfiguration wire bytes spliced from the previous bytes of the same RouteConfiguration.

```
VirtualHost vhost ─ flatten_matches (precedence order) ─> (rule, match index) ...
   a rule's Route records, per match: 0x1a + len + Route bytes
      the rule equal to the one the previous bytes were made from ─> a slice of those bytes
      else (new or changed rule)                                   ─> rule_bytes(rule)
VirtualHost bytes   = VirtualHost(name, domains) bytes + the records in that order
RouteConfiguration  = RouteConfiguration(name) bytes + per vhost: 0x12 + len + vhost bytes
RuleSpans: rule name -> (rule, where each of its match's records is in the bytes)
```

Protobuf's wire format is the fields in number order, a repeated message field being one
length-prefixed record per element, so bytes joined this way are what
`SerializeToString(deterministic=True)` of the whole message gives (tests/engine/xds/
test_cache.py checks every golden case). One changed route among 10,000 in one parent then
translates one rule and copies bytes for the rest, instead of building and serializing 10,000
Route messages again.

Only positions are kept, not the rules' bytes: the bytes are the packed RouteConfiguration's
own (read back once per splice), so 10,000 routes cost their wire bytes once, not twice.

Deliberately not here: which view a client gets (`listeners.view_of`), the Listener.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from google.protobuf import any_pb2

from turnout.engine import ir
from turnout.engine.xds.resources import ROUTE_CONFIGURATION_TYPE
from turnout.engine.xds.routes import flatten_matches, route_matches_from, rule_route
from turnout.engine.xds.translator import referenced_clusters
from turnout.engine.xds.wire import INVALID_CLUSTER

_VHOST_ROUTES = b"\x1a"  # VirtualHost.routes = 3, length-delimited
_CONFIG_VHOSTS = b"\x12"  # RouteConfiguration.virtual_hosts = 2, length-delimited


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _framed(tag: bytes, data: bytes) -> bytes:
    return tag + _varint(len(data)) + data


Chunk = bytes | memoryview


@dataclass(frozen=True, slots=True)
class RuleBytes:
    matches: tuple[Chunk, ...]
    """Per match of the rule: its framed Route records (one or two path matchers)."""
    uses_invalid: bool


def rule_bytes(rule: ir.Rule) -> RuleBytes:
    template = rule_route(rule)
    chunks = []
    invalid = False
    for match in rule.matches:
        parts = []
        for path_match in route_matches_from(match):
            route = rc.Route()
            route.CopyFrom(template)
            route.name = match.name
            route.match.CopyFrom(path_match)
            parts.append(_framed(_VHOST_ROUTES, route.SerializeToString(deterministic=True)))
        chunks.append(b"".join(parts))
    if rule.matches:
        probe = route_pb2.RouteConfiguration(virtual_hosts=[rc.VirtualHost(routes=[template])])
        invalid = INVALID_CLUSTER in referenced_clusters((probe,))
    return RuleBytes(matches=tuple(chunks), uses_invalid=invalid)


@dataclass(frozen=True, slots=True)
class RuleSpans:
    """Where each rule's records are in one RouteConfiguration's bytes: rule name -> its
    number; by number the rule they were made from, whether it uses the invalid cluster,
    and its matches' (start, end) in `bounds` (flat, from `first[number]`)."""

    numbers: dict[str, int]
    rules: list[ir.Rule]
    invalid: list[bool]
    first: array[int]
    bounds: array[int]
    size: int
    """The length of the bytes (what `Any.ByteSize` would serialize 9 MB to tell)."""

    def reuse(self, rule: ir.Rule, value: memoryview) -> RuleBytes | None:
        """`rule`'s records as slices of `value` (the bytes these spans index), or None when
        they were made from another rule."""
        n = self.numbers.get(rule.name)
        if n is None:
            return None
        old = self.rules[n]
        if not (old is rule or old == rule):
            return None
        at, b = self.first[n], self.bounds
        return RuleBytes(
            matches=tuple(value[b[i] : b[i + 1]] for i in range(at, at + 2 * len(rule.matches), 2)),
            uses_invalid=self.invalid[n],
        )


Previous = tuple[any_pb2.Any, RuleSpans]
"""A RouteConfiguration packed earlier and its spans: what a splice copies from."""


def route_configuration(
    name: str, vhosts: Sequence[ir.VirtualHost], previous: Previous | None = None
) -> tuple[any_pb2.Any, bool, RuleSpans]:
    """The packed RouteConfiguration `name` with one VirtualHost per vhost, whether a route
    points at the invalid cluster, and its spans; rules equal to those `previous` was made
    from are copied from its bytes."""
    value = memoryview(previous[0].value) if previous is not None else None
    made: dict[str, tuple[ir.Rule, RuleBytes]] = {}
    spans = _SpansBuilder()
    head = route_pb2.RouteConfiguration(name=name).SerializeToString(deterministic=True)
    out: list[Chunk] = [head]
    pos = len(head)
    invalid = False
    for vhost in vhosts:
        index = {id(r): _rule(r, made, previous, value) for r in vhost.rules}
        match_index = {id(m): i for r in vhost.rules for i, m in enumerate(r.matches)}
        vh = rc.VirtualHost(name=vhost.name, domains=list(vhost.domains))
        parts: list[Chunk] = [vh.SerializeToString(deterministic=True)]
        placed: list[tuple[ir.Rule, int, int]] = []  # (rule, match number, offset in vhost)
        offset = len(parts[0])
        for rule, match in flatten_matches(vhost):
            cached = index[id(rule)]
            chunk = cached.matches[match_index[id(match)]]
            placed.append((rule, match_index[id(match)], offset))
            parts.append(chunk)
            offset += len(chunk)
            invalid = invalid or cached.uses_invalid
        frame = _CONFIG_VHOSTS + _varint(offset)
        base = pos + len(frame)
        for rule, i, at in placed:
            spans.place(rule, index[id(rule)], i, base + at)
        out.append(frame)
        out.extend(parts)
        pos = base + offset
    packed = any_pb2.Any(type_url=ROUTE_CONFIGURATION_TYPE, value=b"".join(out))
    return packed, invalid, spans.build(pos)


def _rule(
    rule: ir.Rule,
    made: dict[str, tuple[ir.Rule, RuleBytes]],
    previous: Previous | None,
    value: memoryview | None,
) -> RuleBytes:
    """`rule`'s records: made already in this splice (a Gateway's vhosts share rules), or
    sliced from `previous`, or translated."""
    found = made.get(rule.name)
    if found is not None and (found[0] is rule or found[0] == rule):
        return found[1]
    reused = None if previous is None or value is None else previous[1].reuse(rule, value)
    out = reused if reused is not None else rule_bytes(rule)
    made[rule.name] = (rule, out)
    return out


@dataclass(slots=True)
class _SpansBuilder:
    numbers: dict[str, int] = field(default_factory=dict)
    rules: list[ir.Rule] = field(default_factory=list)
    invalid: list[bool] = field(default_factory=list)
    starts: list[list[int]] = field(default_factory=list)
    """Per rule number, per match: its start (-1 until placed); its end is the start plus
    the length of the rule's records for that match."""
    made: list[RuleBytes] = field(default_factory=list)

    def place(self, rule: ir.Rule, made: RuleBytes, match: int, at: int) -> None:
        """Match `match` of `rule` is at `at`: kept for the rule's first occurrence only (a
        Gateway's vhosts share rules, and their records are the same bytes)."""
        n = self.numbers.get(rule.name)
        if n is None:
            n = self.numbers[rule.name] = len(self.rules)
            self.rules.append(rule)
            self.invalid.append(made.uses_invalid)
            self.made.append(made)
            self.starts.append([-1] * len(rule.matches))
        elif self.rules[n] is not rule:
            return
        row = self.starts[n]
        if row[match] < 0:
            row[match] = at

    def build(self, size: int) -> RuleSpans:
        first = array("Q")
        bounds = array("Q")
        for n, starts in enumerate(self.starts):
            first.append(len(bounds))
            for start, chunk in zip(starts, self.made[n].matches, strict=True):
                bounds.extend((start, start + len(chunk)))
        return RuleSpans(self.numbers, self.rules, self.invalid, first, bounds, size)
