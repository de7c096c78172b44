"""SMI kinds: TrafficSplit (`split.smi-spec.io` v1alpha1..v1alpha4) and HTTPRouteGroup
(`specs.smi-spec.io` v1alpha3, v1alpha4), plus the HTTPRoute an SMI split stands for.

```
split.smi-spec.io/v1alpha1  TrafficSplitV1alpha1  backends[].weight: Kubernetes quantity
split.smi-spec.io/v1alpha2  TrafficSplitV1alpha2  backends[].weight: whole number
split.smi-spec.io/v1alpha3  TrafficSplit          + spec.matches[] -> HTTPRouteGroup
split.smi-spec.io/v1alpha4  TrafficSplit          (same shape as v1alpha3)
specs.smi-spec.io/v1alpha3  HTTPRouteGroup        spec.matches[{name, pathRegex, methods, headers}]
specs.smi-spec.io/v1alpha4  HTTPRouteGroup
```

The shapes follow `servicemeshinterface/smi-spec: apis/traffic-split/*` and
`apis/traffic-specs/*` and what Flagger writes (`reference/flagger/FLAGGER-CONTRACT.md` §3):
v1alpha1 weights travel as quantity strings (``"10"``, ``"500m"``) or plain integers (the
linkerd-smi CRD declares them int-or-string). `milli_units` turns a quantity into an exact
integer number of thousandths, so relative weights never meet a float.

`TrafficSplitRoute` is the one model the SMI adapter (`turnout.adapters.smi`) produces: an
`HTTPRoute` whose `kind` is ``TrafficSplit``, so that IR names, `SourceRef`s, diagnostics and
route status name the TrafficSplit the rules came from. Nothing here converts; this module
only parses.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StrictInt, StrictStr
from pydantic_core import PydanticCustomError

from turnout.engine.model.base import K8sModel, Name, Resource, Str
from turnout.engine.model.httproute import HTTPRoute

SPLIT_GROUP = "split.smi-spec.io"
SPECS_GROUP = "specs.smi-spec.io"

# --------------------------------------------------------------------------- quantities

QUANTITY = re.compile(
    r"^(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
)
"""`resource.Quantity` (k8s.io/apimachinery `quantity.go`): a signed decimal number and one
suffix: binary SI (Ki..Ei), decimal SI (n, u, m, "", k, M, G, T, P, E) or a decimal exponent."""

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def quantity_value(value: int | str) -> Decimal:
    """The exact value of a quantity (``"500m"`` -> 0.5, ``"1Ki"`` -> 1024, ``10`` -> 10).

    Raises `ValueError` for anything the API server would refuse as a quantity."""
    if isinstance(value, bool):
        raise ValueError("must be a quantity, not a boolean")
    if isinstance(value, int):
        return Decimal(value)
    m = QUANTITY.match(value.strip()) if value.strip() == value else None
    if m is None:
        raise ValueError(
            "quantities must match the regular expression "
            r"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        )
    try:
        number = Decimal(m["num"])
    except InvalidOperation as exc:  # pragma: no cover - the regex admits valid decimals only
        raise ValueError(f"invalid number {m['num']!r}") from exc
    suffix = m["suffix"] or ""
    if suffix in _BINARY:
        return number * (Decimal(1024) ** _BINARY[suffix])
    if suffix in _DECIMAL:
        return number.scaleb(_DECIMAL[suffix])
    return number.scaleb(int(suffix[1:]))


def milli_units(value: int | str) -> int:
    """A quantity in thousandths, rounded up like `Quantity.MilliValue()`:
    ``"500m"`` -> 500, ``"1"`` -> 1000, ``10`` -> 10000, ``"1u"`` -> 1."""
    milli = quantity_value(value) * 1000
    return int(milli.to_integral_value(rounding=ROUND_CEILING))


def _non_negative_quantity(value: int | str) -> int | str:
    """Pydantic check: a valid quantity, not negative (API-server wording)."""
    try:
        number = quantity_value(value)
    except ValueError as exc:
        raise PydanticCustomError("quantity", str(exc)) from None
    if number < 0:
        raise PydanticCustomError("quantity", "must be greater than or equal to 0")
    return value


Quantity = Annotated[StrictInt | StrictStr, AfterValidator(_non_negative_quantity)]
"""A v1alpha1 weight as written (int or quantity string), checked to be a valid quantity >= 0."""

Weight = Annotated[StrictInt, Field(ge=0, le=2**31 - 1)]

# --------------------------------------------------------------------------- TrafficSplit


class TrafficSplitBackendV1alpha1(K8sModel):
    service: Name
    """Name of a Service in the TrafficSplit's namespace."""
    weight: Quantity
    """Relative weight as a Kubernetes quantity: ``"1"`` = ``"1000m"``."""


class TrafficSplitBackend(K8sModel):
    service: Name
    weight: Weight
    """Relative weight, a whole number (not a percentage)."""


class TrafficSplitMatch(K8sModel):
    """`TypedLocalObjectReference` to the HTTPRouteGroup whose matches select the traffic."""

    api_group: Str | None = None
    kind: Literal["HTTPRouteGroup"]
    name: Name


class TrafficSplitSpecV1alpha1(K8sModel):
    service: Name
    """The apex (root) Service clients address."""
    backends: list[TrafficSplitBackendV1alpha1] = Field(min_length=1)


class TrafficSplitSpecV1alpha2(K8sModel):
    service: Name
    backends: list[TrafficSplitBackend] = Field(min_length=1)


class TrafficSplitSpec(K8sModel):
    """v1alpha3 and v1alpha4: v1alpha2 plus `matches`."""

    service: Name
    backends: list[TrafficSplitBackend] = Field(min_length=1)
    matches: list[TrafficSplitMatch] = Field(default_factory=list)
    """HTTPRouteGroups in the same namespace; their matches are merged (ORed). Empty: the
    split applies to all traffic to the apex."""


class TrafficSplitV1alpha1(Resource):
    kind: Literal["TrafficSplit"] = "TrafficSplit"
    spec: TrafficSplitSpecV1alpha1


class TrafficSplitV1alpha2(Resource):
    kind: Literal["TrafficSplit"] = "TrafficSplit"
    spec: TrafficSplitSpecV1alpha2


class TrafficSplit(Resource):
    """TrafficSplit v1alpha3 / v1alpha4 (the same shape)."""

    kind: Literal["TrafficSplit"] = "TrafficSplit"
    spec: TrafficSplitSpec


AnyTrafficSplit = TrafficSplitV1alpha1 | TrafficSplitV1alpha2 | TrafficSplit

# --------------------------------------------------------------------------- HTTPRouteGroup


class HTTPMatch(K8sModel):
    name: Name
    """The match's key inside the group."""
    methods: list[Str] = Field(default_factory=list)
    """HTTP methods, or ``*`` for all; empty = all."""
    path_regex: Str | None = None
    """A regex anchored at the beginning of the path (``^``) only; None = every path."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Header name -> value regex; several headers are ANDed."""


class HTTPRouteGroupSpec(K8sModel):
    matches: list[HTTPMatch] = Field(default_factory=list)


class HTTPRouteGroup(Resource):
    kind: Literal["HTTPRouteGroup"] = "HTTPRouteGroup"
    spec: HTTPRouteGroupSpec = Field(default_factory=HTTPRouteGroupSpec)


# --------------------------------------------------------------------------- the route


class TrafficSplitRoute(HTTPRoute):
    """The HTTPRoute a TrafficSplit stands for (HTTPROUTE-SEMANTICS §14), built by the SMI
    adapter. It is an `HTTPRoute` for the compiler; its kind says where it came from, so the
    IR names its rules ``trafficsplit/<ns>/<name>/rule/<i>``."""

    kind: Literal["TrafficSplit"] = "TrafficSplit"  # type: ignore[assignment]
