"""The values `mesh install` renders with: the defaults, in one place, and how they change.

```
Values() ──--ha──> HA_VALUES ──-f FILE──> merge_tree ──--set k=v──> set_value ──> Values
 defaults           replicas 3,            a YAML mapping              dotted camelCase key,
                    anti-affinity,         of the same keys            the value as text
                    PodDisruptionBudget
```

Keys are camelCase, as in a Helm values file (``resources.requests.cpu``,
``identity.leafLifetime``); each maps to a snake_case field of the frozen dataclasses below.
An unknown key, a value of the wrong type or one a field's check refuses is a `ValuesError`
naming where it came from (``values.yaml: replicas: ...``, ``--set replicas=x: ...``).
docs/cluster.md lists every key with its default: keep the two together.

Deliberately not here: what the values turn into (`controller`, `webhook`, `identity`).
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from turnout.cluster import names
from turnout.cluster.install.errors import ValuesError
from turnout.engine.identity.names import check_domain
from turnout.engine.identity.settings import DEFAULT_TRUST_DOMAIN

_QUANTITY = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[kMGTPE]i?|[mun]|)")
_DURATION = re.compile(r"(?:[0-9]{1,5}(?:h|m|s|ms))+")
_DURATION_PART = re.compile(r"([0-9]{1,5})(h|ms|m|s)")
_DURATION_MS = {"h": 3_600_000, "m": 60_000, "s": 1_000, "ms": 1}
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def duration_ms(text: str) -> int:
    """``24h``, ``1h30m``, ``500ms`` (a Gateway API Duration) -> milliseconds."""
    return sum(int(n) * _DURATION_MS[unit] for n, unit in _DURATION_PART.findall(text))


def _quantity(v: object) -> str | None:
    return None if v is None or _QUANTITY.fullmatch(str(v)) else "is not a quantity (100m, 1Gi)"


def _duration(v: object) -> str | None:
    if not _DURATION.fullmatch(str(v)):
        return "is not a duration (24h, 90m, 20s)"
    return None if duration_ms(str(v)) >= 1000 else "must be at least 1s"


def _dns_label(v: object) -> str | None:
    ok = len(str(v)) <= 63 and _DNS_LABEL.fullmatch(str(v))
    return None if ok else "is not a namespace name (RFC 1123 label)"


def _trust_domain(v: object) -> str | None:
    try:
        check_domain(str(v))
    except ValueError as exc:
        return str(exc)
    return None


def _range(lo: int, hi: int) -> Callable[[object], str | None]:
    def check(v: object) -> str | None:
        return None if lo <= int(str(v)) <= hi else f"must be {lo}..{hi}"

    return check


def _checked(default: object, check: Callable[[object], str | None]) -> Any:
    return field(default=default, metadata={"check": check})


@dataclass(frozen=True, slots=True, kw_only=True)
class Quantities:
    cpu: str | None = _checked(None, _quantity)
    """A CPU quantity (``100m``); None: not set."""
    memory: str | None = _checked(None, _quantity)
    """A memory quantity (``256Mi``); None: not set."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Resources:
    requests: Quantities = Quantities(cpu="100m", memory="128Mi")
    """What the scheduler reserves for the controller."""
    limits: Quantities = Quantities(memory="1Gi")
    """The ceiling; no CPU limit by default (throttling a control plane only slows pushes)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityValues:
    """The mesh CA `mesh install` generates (ignored with ``--identity-dir``)."""

    trust_domain: str = _checked(DEFAULT_TRUST_DOMAIN, _trust_domain)
    leaf_lifetime: str = _checked("24h", _duration)
    """A proxy certificate's validity."""
    clock_skew: str = _checked("20s", _duration)
    """Allowance added to both ends of a leaf's validity."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectorValues:
    timeout_seconds: int = _checked(10, _range(1, 30))
    """How long the API server waits for the webhook (the API allows 1..30)."""
    failure_policy: Literal["Ignore", "Fail"] = "Ignore"
    """Ignore: a pod is created uninjected when the webhook does not answer."""
    cert_validity: str = _checked("8760h", _duration)
    """The generated serving certificate's (and its CA's) validity."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GrafanaValues:
    """Turnout's Grafana dashboards as ConfigMaps (`grafana.py`); ``--grafana`` turns them on."""

    dashboards: bool = False
    """One ConfigMap per dashboard, labelled ``grafana_dashboard: "1"`` for Grafana's sidecar."""
    namespace: str | None = _checked(None, _dns_label)
    """Where the ConfigMaps go (Grafana's namespace); None: the control plane's."""


def _http_url(v: object) -> str | None:
    ok = re.fullmatch(r"https?://[^\s/]+(/\S*)?", str(v))
    return None if ok else "is not an http(s) URL (http://prometheus.monitoring:9090)"


@dataclass(frozen=True, slots=True, kw_only=True)
class VizValues:
    """What the viz commands and the dashboard read in the cluster (docs/viz.md)."""

    dashboard: bool = True
    """`mesh serve --dashboard` on :50750 and Service turnout-dashboard (port-forward to it)."""
    prometheus_url: str | None = _checked(None, _http_url)
    """The cluster's Prometheus (`mesh serve --prometheus-url`): `mesh stat`, `edges`,
    `routes --live` and the dashboard query it; None: they scrape the proxies directly."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Values:
    """Everything `mesh install` renders from; `Values()` is the default install."""

    namespace: str = _checked(names.NAMESPACE, _dns_label)
    """The control plane's namespace."""
    image: str = names.IMAGE
    """The controller's image (built from the repository's Dockerfile)."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    replicas: int = _checked(1, _range(1, 100))
    """Controller replicas; every one serves xDS, the Lease holder writes status."""
    anti_affinity: Literal["none", "preferred", "required"] = "none"
    """Spread replicas over nodes (``kubernetes.io/hostname``); required: at most one per node."""
    pod_disruption_budget: bool = False
    """A PodDisruptionBudget of maxUnavailable 1."""
    resources: Resources = Resources()
    identity: IdentityValues = IdentityValues()
    injector: InjectorValues = InjectorValues()
    grafana: GrafanaValues = GrafanaValues()
    viz: VizValues = VizValues()


HA_VALUES: Mapping[str, object] = {
    "replicas": 3,
    "antiAffinity": "required",
    "podDisruptionBudget": True,
}
"""What ``--ha`` applies before ``-f`` and ``--set``: Linkerd's HA values (3 replicas, one per
node, a disruption budget)."""


def _snake(key: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), key)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _field(cls: type, key: str, where: str) -> dataclasses.Field[Any]:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    f = fields.get(_snake(key))
    if f is None or key != _camel(_snake(key)):
        known = ", ".join(_camel(n) for n in fields)
        raise ValuesError(f"{where}: unknown key {key!r} (known: {known})")
    return f


def _convert(tp: Any, value: object, from_text: bool) -> object:
    """`value` as the field type `tp` holds, or `ValueError` saying what was wanted."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) is Literal:
        if value not in args:
            raise ValueError("must be one of " + ", ".join(map(str, args)))
        return value
    if type(None) in args:
        if value is None or (from_text and value in ("", "null")):
            return None
        return _convert(next(a for a in args if a is not type(None)), value, from_text)
    if tp is bool:
        if from_text and value in ("true", "false"):
            return value == "true"
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if tp is int:
        if from_text and isinstance(value, str) and value.isdigit():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be a whole number")
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError("must be a string")
    return str(value)


def _assign(obj: Any, path: list[str], value: object, *, where: str, from_text: bool) -> Any:
    key, rest = path[0], path[1:]
    f = _field(type(obj), key, where)
    tp = typing.get_type_hints(type(obj))[f.name]
    current = getattr(obj, f.name)
    if dataclasses.is_dataclass(current):
        if not rest:
            if from_text or not isinstance(value, Mapping):
                raise ValuesError(f"{where}: {key} is a mapping; set one of its keys")
            for k, v in value.items():
                current = _assign(current, [str(k)], v, where=f"{where}.{k}", from_text=False)
            return dataclasses.replace(obj, **{f.name: current})
        new = _assign(current, rest, value, where=where, from_text=from_text)
        return dataclasses.replace(obj, **{f.name: new})
    if rest:
        raise ValuesError(f"{where}: {key} is not a mapping")
    try:
        converted = _convert(tp, value, from_text)
    except ValueError as exc:
        raise ValuesError(f"{where}: {exc}, got {value!r}") from None
    check = f.metadata.get("check")
    problem = check(converted) if check and converted is not None else None
    if problem:
        raise ValuesError(f"{where}: {converted!r} {problem}")
    return dataclasses.replace(obj, **{f.name: converted})


def merge_tree(values: Values, tree: object, *, source: str) -> Values:
    """`values` with every key of a values mapping (nested, camelCase) applied."""
    if not isinstance(tree, Mapping):
        raise ValuesError(f"{source}: want a mapping of values, got {type(tree).__name__}")
    for key, value in tree.items():
        values = _assign(values, [str(key)], value, where=f"{source}: {key}", from_text=False)
    return values  # type: ignore[no-any-return, unused-ignore]


def set_value(values: Values, assignment: str) -> Values:
    """``--set a.b=text``: the one key changed, the text read as the field's type."""
    key, sep, text = assignment.partition("=")
    where = f"--set {assignment}"
    if not sep or not key:
        raise ValuesError(f"{where}: want KEY=VALUE (e.g. replicas=3)")
    new: Values = _assign(values, key.split("."), text, where=where, from_text=True)
    return new


def read_values_file(path: str) -> object:
    """The parsed YAML of a values file (`ValuesError` naming it when it cannot be read)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValuesError(f"{path}: {exc.strerror or exc}") from None
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark else ""
        raise ValuesError(f"{path}: not YAML{line}") from None
    return {} if tree is None else tree


def build_values(
    *, ha: bool = False, files: tuple[str, ...] = (), sets: tuple[str, ...] = ()
) -> Values:
    """Defaults, then ``--ha``, then each ``-f`` file in order, then each ``--set``."""
    values = Values()
    if ha:
        values = merge_tree(values, HA_VALUES, source="--ha")
    for path in files:
        values = merge_tree(values, read_values_file(path), source=path)
    for assignment in sets:
        values = set_value(values, assignment)
    return values


def flat_defaults(values: object = None, prefix: str = "") -> list[tuple[str, object]]:
    """Every leaf key (dotted, camelCase) with its value in `values` (default: `Values()`),
    in field order: what docs/cluster.md's table lists."""
    obj = Values() if values is None else values
    out: list[tuple[str, object]] = []
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        key = prefix + _camel(f.name)
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out += flat_defaults(value, key + ".")
        else:
            out.append((key, value))
    return out
