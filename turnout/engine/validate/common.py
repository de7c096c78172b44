"""Building blocks shared by the built-in rules of every kind.

The built-in rules restate the CRDs' `x-kubernetes-validations` (CEL) rules and their
list-map / set uniqueness in plain Python over the typed models of `engine.model`. This module
holds what more than one kind needs:

```
Loaded[Route] --> parent_ref_rules(spec.parentRefs)      (sectionName/port uniqueness)
              --> backend_port_rule(any backendRef)      ("Must have port for Service reference")
              --> unique_by_key / unique_set             (list-map and set duplicates)
              --> session_persistence_rules              (exp GEP-1619 shape of this snapshot)
```

Every finding is an error `Diagnostic` at the schema location the API server would name:
a CEL rule attached to ``spec.rules[]`` reports ``spec.rules[3]``; a list-map duplicate reports
the repeated item (``spec.rules[0].matches[0].headers[1]``). The message is the CRD's own
message text, so a user who also runs the API server sees the same words. The reason is
`FieldValueInvalid`, or `FieldValueForbidden` for rules that forbid a field that is present
(`reason_for`), or `FieldValueDuplicate` for list-map / set duplicates.

This module does not parse YAML, read CRD files or evaluate CEL (`validate.crds` does).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Literal, TypeVar

from turnout.engine.diagnostics import Diagnostic, SourcePos, error
from turnout.engine.model.base import BackendObjectReference, ParentReference
from turnout.engine.model.httproute import SessionPersistence

Channel = Literal["standard", "experimental"]
"""Gateway API CRD channel whose rules apply; the experimental channel is the default."""

INVALID = "FieldValueInvalid"
DUPLICATE = "FieldValueDuplicate"
FORBIDDEN = "FieldValueForbidden"

T = TypeVar("T")

_FORBIDS = re.compile(r"must be nil|must not be specified|must not be used together|cannot contain")

PATH_CHARS = re.compile(r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$")
"""The characters Gateway API allows in a path (the CRD's rule on `matches[].path.value`):
RFC 3986 pchars and "/", other bytes percent-encoded."""


def reason_for(message: str) -> str:
    """The reason code of a CEL rule's failure, from its message.

    The Gateway API rules carry no `reason`, so the API server says `FieldValueInvalid` for
    all of them. Turnout refines that: a rule whose message says a field must be absent
    ("must be nil", "must not be specified", ...) reports `FieldValueForbidden`. The CRD path
    (`validate.crds`) uses this same function, so both paths agree.
    """
    return FORBIDDEN if _FORBIDS.search(message) else INVALID


def rule_error(message: str, pos: SourcePos) -> Diagnostic:
    """A failed CEL-equivalent rule, worded as the CRD words it."""
    return error(reason_for(message), message, pos)


def duplicate_message(value: object) -> str:
    """API server wording for a repeated list-map key or set item (JSON-rendered value)."""
    return f"Duplicate value: {json.dumps(value, separators=(',', ':'), sort_keys=True)}"


def unique_by_key(
    items: Sequence[T], key: Callable[[T], dict[str, object]], pos: SourcePos
) -> list[Diagnostic]:
    """Duplicates of a list-map (`x-kubernetes-list-type: map`): each repeat is reported."""
    if len(items) < 2:
        return []  # nothing to repeat (most lists: 10k routes have 40k of them)
    seen: set[str] = set()
    out: list[Diagnostic] = []
    for i, item in enumerate(items):
        k = key(item)
        text = json.dumps(k, sort_keys=True)
        if text in seen:
            out.append(error(DUPLICATE, duplicate_message(k), pos.child(f"[{i}]")))
        seen.add(text)
    return out


def unique_set(items: Sequence[object], pos: SourcePos) -> list[Diagnostic]:
    """Duplicates of a set (`x-kubernetes-list-type: set`): each repeat is reported."""
    if len(items) < 2:
        return []
    seen: list[object] = []
    out: list[Diagnostic] = []
    for i, item in enumerate(items):
        if item in seen:
            out.append(error(DUPLICATE, duplicate_message(item), pos.child(f"[{i}]")))
        seen.append(item)
    return out


def unique_names(items: Sequence[T], name: Callable[[T], str], pos: SourcePos) -> list[Diagnostic]:
    """A list-map keyed by `name` (listeners, headers, query params, header modifiers)."""
    return unique_by_key(items, lambda item: {"name": name(item)}, pos)


# --------------------------------------------------------------------------- parentRefs

_SECTION_MISSING = {
    "standard": "sectionName must be specified when parentRefs includes 2 or more references "
    "to the same parent",
    "experimental": "sectionName or port must be specified when parentRefs includes 2 or more "
    "references to the same parent",
}
_SECTION_UNIQUE = {
    "standard": "sectionName must be unique when parentRefs includes 2 or more references to "
    "the same parent",
    "experimental": "sectionName or port must be unique when parentRefs includes 2 or more "
    "references to the same parent",
}


def _same_parent(a: ParentReference, b: ParentReference) -> bool:
    # An unset namespace and "" are the same (the route's own namespace), per the CEL rule.
    return (a.group, a.kind, a.name, a.namespace or "") == (
        b.group,
        b.kind,
        b.name,
        b.namespace or "",
    )


def _section_key(p: ParentReference, channel: Channel) -> tuple[str, int]:
    port = (p.port or 0) if channel == "experimental" else 0
    return (p.section_name or "", port)


def parent_ref_rules(
    refs: Sequence[ParentReference], pos: SourcePos, *, channel: Channel
) -> list[Diagnostic]:
    """Two references to one parent must all set, and uniquely set, sectionName (and, in the
    experimental channel, port): the two `spec.parentRefs` CEL rules."""
    if len(refs) < 2:
        return []  # one reference is always distinct and needs no sectionName
    out: list[Diagnostic] = []
    mixed = any(
        _same_parent(a, b)
        and any(
            (x == "" or x == 0) != (y == "" or y == 0)
            for x, y in zip(_section_key(a, channel), _section_key(b, channel), strict=True)
        )
        for a in refs
        for b in refs
    )
    if mixed:
        out.append(rule_error(_SECTION_MISSING[channel], pos))
    repeated = any(
        sum(
            1
            for b in refs
            if _same_parent(a, b) and _section_key(a, channel) == _section_key(b, channel)
        )
        != 1
        for a in refs
    )
    if repeated:
        out.append(rule_error(_SECTION_UNIQUE[channel], pos))
    return out


# --------------------------------------------------------------------------- rules list

TOTAL_MATCHES = (
    "While 16 rules and 64 matches per rule are allowed, the total number of matches across "
    "all rules in a route must be less than 128"
)
MAX_TOTAL_MATCHES = 128
RULE_NAME_UNIQUE = "Rule name must be unique within the route"


def rules_list_rules(
    match_counts: Sequence[int],
    names: Sequence[str | None],
    pos: SourcePos,
    *,
    channel: Channel,
) -> list[Diagnostic]:
    """The `spec.rules` CEL rules: total matches <= 128; (exp) unique rule names."""
    out: list[Diagnostic] = []
    if sum(match_counts) > MAX_TOTAL_MATCHES:
        out.append(rule_error(TOTAL_MATCHES, pos))
    named = [n for n in names if n is not None]
    if channel == "experimental" and len(set(named)) != len(named):
        out.append(rule_error(RULE_NAME_UNIQUE, pos))
    return out


# --------------------------------------------------------------------------- backendRefs

BACKEND_PORT = "Must have port for Service reference"


def backend_port_rule(ref: BackendObjectReference, pos: SourcePos) -> list[Diagnostic]:
    """A core Service reference (group "" and kind Service, the defaults) must set `port`."""
    if ref.group == "" and ref.kind == "Service" and ref.port is None:
        return [rule_error(BACKEND_PORT, pos)]
    return []


# --------------------------------------------------------------------------- sessionPersistence

_SESSION_RULES: tuple[tuple[str, Callable[[SessionPersistence], bool]], ...] = (
    (
        "AbsoluteTimeout must be specified when cookie lifetimeType is Permanent",
        lambda s: (
            s.cookie is None
            or s.cookie.lifetime_type != "Permanent"
            or s.absolute_timeout is not None
        ),
    ),
    ("cookie must be nil if type is not Cookie", lambda s: s.cookie is None or s.type == "Cookie"),
    (
        "cookie must be specified for Cookie type",
        lambda s: s.type != "Cookie" or s.cookie is not None,
    ),
    ("header must be nil if type is not Header", lambda s: s.header is None or s.type == "Header"),
    (
        "header must be specified for Header type",
        lambda s: s.type != "Header" or s.header is not None,
    ),
)


def session_persistence_rules(sp: SessionPersistence | None, pos: SourcePos) -> list[Diagnostic]:
    """The five `rules[].sessionPersistence` CEL rules (experimental channel)."""
    if sp is None:
        return []
    return [rule_error(message, pos) for message, ok in _SESSION_RULES if not ok(sp)]


# --------------------------------------------------------------------------- durations

_DURATION_PART = re.compile(r"([0-9]+)(h|ms|m|s)")
_UNIT_MS = {"h": 3_600_000, "m": 60_000, "s": 1_000, "ms": 1}


def duration_ms(text: str) -> int | None:
    """A Gateway API Duration (GEP-2257, e.g. ``1h30m``, ``500ms``) in milliseconds; None when
    it does not parse (the schema pattern reports that)."""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(int(n) * _UNIT_MS[u] for n, u in parts)


def concat(groups: Iterable[list[Diagnostic]]) -> list[Diagnostic]:
    """Flatten per-rule results, keeping order."""
    return [d for group in groups for d in group]
