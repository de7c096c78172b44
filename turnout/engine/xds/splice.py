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
from dataclasses import dataclass
from itertools import accumulate
from typing import NamedTuple

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


Chunk = bytes


class RuleBytes(NamedTuple):
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

    def number(self, rule: ir.Rule) -> int | None:
        """The number of `rule`'s records here, None when they were made from another rule."""
        n = self.numbers.get(rule.name)
        if n is None:
            return None
        old = self.rules[n]
        return n if old is rule or old == rule else None


Previous = tuple[any_pb2.Any, RuleSpans]
"""A RouteConfiguration packed earlier and its spans: what a splice copies from."""


def route_configuration(
    name: str, vhosts: Sequence[ir.VirtualHost], previous: Previous | None = None
) -> tuple[any_pb2.Any, bool, RuleSpans]:
    """The packed RouteConfiguration `name` with one VirtualHost per vhost, whether a route
    points at the invalid cluster, and its spans; rules equal to those `previous` was made
    from are copied from its bytes."""
    # Bytes slices, not memoryviews: bytes are not tracked by the cyclic GC, and 10,000
    # tracked objects per splice would start collections that walk the whole heap.
    value = previous[0].value if previous is not None else b""
    old = previous[1] if previous is not None else None
    rules: dict[str, ir.Rule] = {}  # by name, the rule this splice took (first seen)
    uses_invalid: dict[str, bool] = {}
    starts: dict[int, int] = {}  # id(match) -> where its records start (first vhost only)
    ends: dict[int, int] = {}
    head = route_pb2.RouteConfiguration(name=name).SerializeToString(deterministic=True)
    out: list[bytes] = [head]
    pos = len(head)
    invalid = False
    for vhost in vhosts:
        # per rule: its number in `old` (copied from `value`) or its records translated
        index = {id(r): _rule(r, rules, uses_invalid, old) for r in vhost.rules}
        invalid = invalid or any(
            old.invalid[g] if isinstance(g, int) and old is not None else g.uses_invalid  # type: ignore[union-attr]
            for g in index.values()
        )
        match_index = {id(m): i for r in vhost.rules for i, m in enumerate(r.matches)}
        vh = rc.VirtualHost(name=vhost.name, domains=list(vhost.domains))
        parts = [vh.SerializeToString(deterministic=True)]
        pairs = flatten_matches(vhost)
        offsets = [len(parts[0])]
        first, bounds = (old.first, old.bounds) if old is not None else (None, None)
        for rule, match in pairs:
            got = index[id(rule)]
            if got.__class__ is int:
                assert first is not None and bounds is not None
                at = first[got] + 2 * match_index[id(match)]
                chunk = value[bounds[at] : bounds[at + 1]]
            else:
                chunk = got.matches[match_index[id(match)]]  # type: ignore[union-attr]
            parts.append(chunk)
            offsets.append(offsets[-1] + len(chunk))
        frame = _CONFIG_VHOSTS + _varint(offsets[-1])
        base = pos + len(frame)
        ids = [id(m) for _, m in pairs]
        starts = dict(zip(ids, [base + o for o in offsets[:-1]], strict=True)) | starts
        ends = dict(zip(ids, [base + o for o in offsets[1:]], strict=True)) | ends
        out.append(frame)
        out.extend(parts)
        pos = base + offsets[-1]
    packed = any_pb2.Any(type_url=ROUTE_CONFIGURATION_TYPE, value=b"".join(out))
    return packed, invalid, _spans(rules, uses_invalid, starts, ends, pos)


def _rule(
    rule: ir.Rule,
    rules: dict[str, ir.Rule],
    uses_invalid: dict[str, bool],
    old: RuleSpans | None,
) -> int | RuleBytes:
    """`rule`'s number in `old` when its records can be copied from there, else its records."""
    n = None if old is None else old.number(rule)
    if n is not None:
        assert old is not None
        if rule.name not in rules:
            rules[rule.name], uses_invalid[rule.name] = rule, old.invalid[n]
        return n
    made = rule_bytes(rule)
    if rule.name not in rules:
        rules[rule.name], uses_invalid[rule.name] = rule, made.uses_invalid
    return made


def _spans(
    rules: dict[str, ir.Rule],
    uses_invalid: dict[str, bool],
    starts: dict[int, int],
    ends: dict[int, int],
    size: int,
) -> RuleSpans:
    kept = list(rules.values())
    first = array("Q", accumulate((2 * len(r.matches) for r in kept), initial=0))
    del first[-1]
    ids = [id(m) for r in kept for m in r.matches]
    flat = [0] * (2 * len(ids))  # start, end per match; no tuple per match (GC-tracked)
    flat[0::2] = map(starts.__getitem__, ids)
    flat[1::2] = map(ends.__getitem__, ids)
    bounds = array("Q", flat)
    return RuleSpans(
        numbers=dict(zip(rules, range(len(kept)), strict=True)),
        rules=kept,
        invalid=list(uses_invalid.values()),
        first=first,
        bounds=bounds,
        size=size,
    )
