"""Built-in rules for Gateway, GatewayClass and ReferenceGrant.

```
validate_gateway(Loaded[Gateway])
  spec.addresses                IPAddress values unique; Hostname values unique
  spec.addresses[i]             IPAddress value is an IPv4/IPv6 address (the schema's oneOf);
                                Hostname value matches the hostname pattern
  spec.infrastructure.{annotations,labels}   key format; key prefix < 253 chars
  spec.listeners                the six listener CEL rules; keyed by name (list-map)
  spec.listeners[i].tls         Terminate needs certificateRefs or options
  spec.tls.frontend.perPort     port unique (CEL and list-map)
  status.addresses[i]           Hostname value pattern
validate_gatewayclass          nothing: its one CEL rule (`self == oldSelf`) is a transition
                                rule, checked only on update, which a file never is
validate_referencegrant        nothing: the CRD has no CEL rules; the schema (from/to 1..16,
                                required fields) is enforced while parsing
```

`spec.infrastructure`, `spec.tls` and `status` are kept as raw JSON by the model; the rules
narrow them here and skip anything of the wrong shape (the schema check reports that).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence

from pydantic import JsonValue

from turnout.engine.diagnostics import Diagnostic, SourcePos
from turnout.engine.model.base import HOSTNAME
from turnout.engine.model.gateway import (
    Gateway,
    GatewayAddress,
    GatewayClass,
    Listener,
    ReferenceGrant,
)
from turnout.engine.model.kinds import Loaded
from turnout.engine.validate.common import rule_error, unique_by_key, unique_names

_HOSTNAME = re.compile(HOSTNAME)
ADDRESS_HOSTNAME = (
    r"Hostname value must be empty or contain only valid characters (matching "
    r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$)"
)
STATUS_HOSTNAME = (
    r"Hostname value must only contain valid characters (matching "
    r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$)"
)
_META_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$"
)
_KEY_FORM = (
    " keys must be in the form of an optional DNS subdomain prefix followed by a required name "
    "segment of up to 63 characters."
)
LISTENER_RULES = (
    "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']",
    "tls mode must be Terminate for protocol HTTPS",
    "tls mode must be set for protocol TLS",
    "hostname must not be specified for protocols ['TCP', 'UDP']",
    "Listener name must be unique within the Gateway",
    "Combination of port, protocol and hostname must be unique for each listener",
)
TLS_TERMINATE = "certificateRefs or options must be specified when mode is Terminate"
PER_PORT_UNIQUE = "Port for TLS configuration must be unique within the Gateway"


def validate_gateway(loaded: Loaded[Gateway]) -> list[Diagnostic]:
    """Every built-in rule for one Gateway."""
    spec = loaded.obj.spec
    out = address_rules(spec.addresses, loaded.field("spec.addresses"))
    out += listener_rules(spec.listeners, loaded.field("spec.listeners"))
    if isinstance(spec.infrastructure, Mapping):
        ipos = loaded.field("spec.infrastructure")
        out += _meta_key_rules(spec.infrastructure.get("annotations"), "annotation", ipos)
        out += _meta_key_rules(spec.infrastructure.get("labels"), "label", ipos)
    out += _per_port_rules(spec.tls, loaded.field("spec.tls.frontend.perPort"))
    out += _status_address_rules(loaded.obj.status, loaded.field("status.addresses"))
    return out


def validate_gatewayclass(loaded: Loaded[GatewayClass]) -> list[Diagnostic]:
    """None: `spec.controllerName` immutability needs the old object (see module docstring)."""
    return []


def validate_referencegrant(loaded: Loaded[ReferenceGrant]) -> list[Diagnostic]:
    """None: the ReferenceGrant CRD has no CEL rules and no list-maps."""
    return []


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return "%" not in value  # OpenAPI ipv6 has no zone index


def address_rules(addresses: Sequence[GatewayAddress], pos: SourcePos) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for kind in ("IPAddress", "Hostname"):
        values = [a.value for a in addresses if a.type == kind and a.value is not None]
        if len(set(values)) != len(values):
            out.append(rule_error(f"{kind} values must be unique", pos))
    for i, a in enumerate(addresses):
        apos = pos.child(f"[{i}]")
        if a.type == "IPAddress" and a.value is not None and not _is_ip(a.value):
            message = (
                f'Invalid value: "{a.value}": an IPAddress value must be an IPv4 or IPv6 address'
            )
            out.append(rule_error(message, apos))
        if a.type == "Hostname" and a.value is not None and not _HOSTNAME.match(a.value):
            out.append(rule_error(ADDRESS_HOSTNAME, apos))
    return out


def _listener_ok(ls: Sequence[Listener]) -> tuple[bool, ...]:
    """Whether each of `LISTENER_RULES` holds. The model defaults `tls.mode` to Terminate,
    so the CRD's `mode == ''` alternatives cannot occur here."""

    def key(x: Listener) -> tuple[int, str, str | None]:
        return (x.port, x.protocol, x.hostname)  # hostnames: both unset, or both set and equal

    return (
        all(x.tls is None for x in ls if x.protocol in ("HTTP", "TCP", "UDP")),
        all(x.tls.mode == "Terminate" for x in ls if x.protocol == "HTTPS" and x.tls),
        all(x.tls is not None for x in ls if x.protocol == "TLS"),
        all(not x.hostname for x in ls if x.protocol in ("TCP", "UDP")),
        all(sum(1 for y in ls if y.name == x.name) == 1 for x in ls),
        all(sum(1 for y in ls if key(y) == key(x)) == 1 for x in ls),
    )


def listener_rules(listeners: Sequence[Listener], pos: SourcePos) -> list[Diagnostic]:
    """The six `spec.listeners` rules, the list-map on name and each listener's TLS rule."""
    out = [
        rule_error(message, pos)
        for message, ok in zip(LISTENER_RULES, _listener_ok(listeners), strict=True)
        if not ok
    ]
    out += unique_names(listeners, lambda listener: listener.name, pos)
    for i, listener in enumerate(listeners):
        tls = listener.tls
        if (
            tls is not None
            and tls.mode == "Terminate"
            and not tls.certificate_refs
            and not tls.options
        ):
            out.append(rule_error(TLS_TERMINATE, pos.child(f"[{i}].tls")))
    return out


def _meta_key_rules(keys: JsonValue, what: str, pos: SourcePos) -> list[Diagnostic]:
    if not isinstance(keys, Mapping):
        return []
    field = pos.child(f"{what}s")
    out: list[Diagnostic] = []
    if not all(_META_KEY.match(k) for k in keys):
        out.append(rule_error(what.capitalize() + _KEY_FORM, field))
    if not all(len(k.split("/")[0]) < 253 for k in keys):
        message = (
            f"If specified, the {what} key's prefix must be a DNS subdomain not longer than "
            "253 characters in total."
        )
        out.append(rule_error(message, field))
    return out


def _per_port_rules(tls: Mapping[str, JsonValue] | None, pos: SourcePos) -> list[Diagnostic]:
    frontend = tls.get("frontend") if tls else None
    per_port = frontend.get("perPort") if isinstance(frontend, Mapping) else None
    if not isinstance(per_port, list):
        return []
    items = [p for p in per_port if isinstance(p, Mapping)]
    ports = [p.get("port") for p in items]
    out: list[Diagnostic] = []
    if len(set(map(repr, ports))) != len(ports):
        out.append(rule_error(PER_PORT_UNIQUE, pos))
    out += unique_by_key(items, lambda p: {"port": p.get("port")}, pos)
    return out


def _status_address_rules(
    status: Mapping[str, JsonValue] | None, pos: SourcePos
) -> list[Diagnostic]:
    addresses = status.get("addresses") if status else None
    if not isinstance(addresses, list):
        return []
    out: list[Diagnostic] = []
    for i, a in enumerate(addresses):
        if not isinstance(a, Mapping) or a.get("type") != "Hostname":
            continue
        value = a.get("value")
        if not isinstance(value, str) or not _HOSTNAME.match(value):
            out.append(rule_error(STATUS_HOSTNAME, pos.child(f"[{i}]")))
    return out
