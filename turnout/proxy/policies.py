"""Per-route policies decoded from xDS: header mutations, timeouts, retries, mirrors, faults, CORS.

```
HeaderValueOption[] / *_to_remove  ──> HeaderMutation
Duration                           ──> int ms (0 = None: no timeout, per docs/xds.md)
RetryPolicy                        ──> actions.RetryPolicy  (None when retry_on is empty)
RequestMirrorPolicy[]              ──> (Mirror, ...)
HTTPFault (typed_per_filter_config) ──> Fault
CorsPolicy (typed_per_filter_config) ──> Cors
```

Every function runs once per table update and raises `TableError` (resource + field) for what
the proxy cannot apply. Fractions become per-million ints and durations int milliseconds;
nothing here is used per request.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2

from turnout.proxy.actions import Cors, Fault, Mirror, RetryPolicy
from turnout.proxy.config import DEFAULT_BACKOFF_MAX_FACTOR, KNOWN_RETRY_ON
from turnout.proxy.errors import TableError
from turnout.proxy.mutations import (
    NO_MUTATION,
    HeaderAction,
    HeaderMutation,
    HeaderOp,
    unescape_value,
)

log = logging.getLogger(__name__)

PER_MILLION = 1_000_000
_DENOMINATOR_SCALE = {0: 10_000, 1: 100, 2: 1}
"""FractionalPercent.DenominatorType HUNDRED, TEN_THOUSAND, MILLION -> factor to millionths."""

_APPEND_ACTIONS: dict[int, HeaderAction] = {
    0: "append",
    1: "add_if_absent",
    2: "overwrite",
    3: "overwrite_if_exists",
}
_DEFAULT_BACKOFF_BASE_MS = 25
"""Envoy's default retry base interval."""


def duration_ms(d: Any) -> int:
    """A protobuf Duration in whole milliseconds (rounded down)."""
    return int(d.seconds) * 1000 + int(d.nanos) // 1_000_000


def optional_ms(msg: Any, field: str) -> int | None:
    """Duration field in ms; unset or zero -> None (no timeout)."""
    if not msg.HasField(field):
        return None
    return duration_ms(getattr(msg, field)) or None


def per_million(fraction: Any, *, where: str, field: str) -> int:
    """A FractionalPercent as millionths, capped at 100%."""
    scale = _DENOMINATOR_SCALE.get(fraction.denominator)
    if scale is None:
        raise TableError(
            where, f"{field}.denominator", f"unknown denominator {fraction.denominator}"
        )
    return min(int(fraction.numerator) * scale, PER_MILLION)


def header_mutation(owner: Any, prefix: str, *, where: str, field: str) -> HeaderMutation:
    """`{prefix}_headers_to_add` / `{prefix}_headers_to_remove` of a Route or ClusterWeight."""
    adds = getattr(owner, f"{prefix}_headers_to_add")
    removes = getattr(owner, f"{prefix}_headers_to_remove")
    if not adds and not removes:
        return NO_MUTATION
    ops = []
    for i, opt in enumerate(adds):
        where_field = f"{field}{prefix}_headers_to_add[{i}]"
        if not opt.header.key:
            raise TableError(where, f"{where_field}.header.key", "empty header name")
        if opt.header.raw_value:
            raise TableError(where, f"{where_field}.header.raw_value", "unsupported, use value")
        if opt.HasField("append"):
            action: HeaderAction = "append" if opt.append.value else "overwrite"
        else:
            found = _APPEND_ACTIONS.get(opt.append_action)
            if found is None:
                raise TableError(
                    where, f"{where_field}.append_action", f"unknown {opt.append_action}"
                )
            action = found
        key = opt.header.key
        ops.append(
            HeaderOp(
                name=key, key=key.lower(), value=unescape_value(opt.header.value), action=action
            )
        )
    return HeaderMutation(remove=frozenset(n.lower() for n in removes), ops=tuple(ops))


def retry_from_xds(rp: Any, *, where: str) -> RetryPolicy | None:
    """None when `retry_on` is empty (the policy then only carries `per_try_timeout`)."""
    tokens = frozenset(t.strip() for t in rp.retry_on.split(",") if t.strip())
    if not tokens:
        return None
    unknown = sorted(tokens - KNOWN_RETRY_ON)
    if unknown:
        raise TableError(where, "route.retry_policy.retry_on", f"unknown conditions {unknown}")
    # An unset num_retries means 1 in Envoy; docs/xds.md always sets it (> 0 for grpcio).
    attempts = rp.num_retries.value if rp.HasField("num_retries") else 1
    base = _DEFAULT_BACKOFF_BASE_MS
    cap: int | None = None
    if rp.HasField("retry_back_off"):
        bo = rp.retry_back_off
        base = duration_ms(bo.base_interval)
        if base <= 0:
            raise TableError(
                where, "route.retry_policy.retry_back_off.base_interval", "must be > 0"
            )
        cap = optional_ms(bo, "max_interval")
        if cap is not None and cap < base:
            raise TableError(
                where, "route.retry_policy.retry_back_off.max_interval", "must be >= base_interval"
            )
    return RetryPolicy(
        attempts=attempts,
        retry_on=tokens,
        codes=frozenset(int(c) for c in rp.retriable_status_codes),
        backoff_base_ms=base,
        backoff_max_ms=cap if cap is not None else base * DEFAULT_BACKOFF_MAX_FACTOR,
    )


def mirrors_from_xds(policies: Any, *, where: str) -> tuple[Mirror, ...]:
    out = []
    for i, mp in enumerate(policies):
        if not mp.cluster:
            raise TableError(
                where,
                f"route.request_mirror_policies[{i}].cluster",
                "only a cluster name is supported",
            )
        fraction = PER_MILLION
        if mp.HasField("runtime_fraction"):
            fraction = per_million(
                mp.runtime_fraction.default_value,
                where=where,
                field=f"route.request_mirror_policies[{i}].runtime_fraction.default_value",
            )
        out.append(Mirror(cluster=mp.cluster, per_million=fraction))
    return tuple(out)


def unpack(any_msg: Any, message_type: Any, *, where: str, field: str) -> Any:
    """Unpack a `google.protobuf.Any`, or raise naming the expected type."""
    msg = message_type()
    if any_msg.TypeName() != msg.DESCRIPTOR.full_name or not any_msg.Unpack(msg):
        raise TableError(where, field, f"want {msg.DESCRIPTOR.full_name}, got {any_msg.TypeName()}")
    return msg


def unwrap_filter_config(any_msg: Any, *, where: str, field: str) -> tuple[Any | None, bool]:
    """A per-route filter config, bare or in a `FilterConfig`: `(config, is_optional)`.

    `config` is None when the wrapper says `disabled` (the filter is off for the route)."""
    wrapper_type = route_components_pb2.FilterConfig
    if any_msg.TypeName() != wrapper_type.DESCRIPTOR.full_name:
        return any_msg, False
    fc = unpack(any_msg, wrapper_type, where=where, field=field)
    if fc.disabled:
        return None, fc.is_optional
    if not fc.HasField("config"):
        raise TableError(where, f"{field}.config", "FilterConfig without config")
    return fc.config, fc.is_optional


def fault_from_any(any_msg: Any, *, where: str, field: str) -> Fault:
    hf = unpack(any_msg, fault_pb2.HTTPFault, where=where, field=field)
    fault = Fault()
    if hf.HasField("delay"):
        d = hf.delay
        if d.WhichOneof("fault_delay_secifier") != "fixed_delay":
            raise TableError(where, f"{field}.delay", "only fixed_delay is supported")
        fault = Fault(
            delay_ms=duration_ms(d.fixed_delay),
            delay_per_million=per_million(
                d.percentage, where=where, field=f"{field}.delay.percentage"
            ),
        )
    if hf.HasField("abort"):
        a = hf.abort
        kind = a.WhichOneof("error_type")
        if kind not in ("http_status", "grpc_status"):
            raise TableError(where, f"{field}.abort", f"unsupported abort {kind!r}")
        fault = Fault(
            delay_ms=fault.delay_ms,
            delay_per_million=fault.delay_per_million,
            abort_http_status=a.http_status if kind == "http_status" else None,
            abort_grpc_status=a.grpc_status if kind == "grpc_status" else None,
            abort_per_million=per_million(
                a.percentage, where=where, field=f"{field}.abort.percentage"
            ),
        )
    return fault


def _origin_regex(sm: Any, *, where: str, field: str) -> re.Pattern[str]:
    kind = sm.WhichOneof("match_pattern")
    flags = re.IGNORECASE if sm.ignore_case else 0
    if kind == "safe_regex":
        source = sm.safe_regex.regex
    elif kind == "exact":
        source = re.escape(sm.exact)
    elif kind == "prefix":
        source = re.escape(sm.prefix) + ".*"
    elif kind == "suffix":
        source = ".*" + re.escape(sm.suffix)
    else:
        raise TableError(where, field, f"unsupported origin matcher {kind!r}")
    try:
        return re.compile(source, flags)
    except re.error as exc:
        raise TableError(where, field, f"invalid regex {source!r}: {exc}") from exc


def _split_list(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def cors_from_any(any_msg: Any, *, where: str, field: str) -> Cors:
    cp = unpack(any_msg, cors_pb2.CorsPolicy, where=where, field=field)
    max_age: int | None = None
    if cp.max_age:
        try:
            max_age = int(cp.max_age)
        except ValueError as exc:
            raise TableError(
                where, f"{field}.max_age", f"not a number of seconds: {cp.max_age!r}"
            ) from exc
    return Cors(
        allow_origins=tuple(
            _origin_regex(sm, where=where, field=f"{field}.allow_origin_string_match[{i}]")
            for i, sm in enumerate(cp.allow_origin_string_match)
        ),
        allow_methods=_split_list(cp.allow_methods),
        allow_headers=_split_list(cp.allow_headers),
        expose_headers=_split_list(cp.expose_headers),
        max_age_s=max_age,
        allow_credentials=cp.allow_credentials.value if cp.HasField("allow_credentials") else False,
    )
