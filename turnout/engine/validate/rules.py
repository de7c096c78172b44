"""The built-in rules, dispatched by kind: `validate_resources(resources)`.

```
Resources --for each Loaded--> RULES[type(obj)](loaded, channel) --> [Diagnostic, ...]
```

One explicit table maps each model class to its rule function (no registration at import
time). A kind with no entry (Service, EndpointSlice, our policy CRDs) has no CEL rules to
restate; the authorization kinds' rules are `validate.authz`. Every diagnostic is an
error; the list is sorted and free of duplicates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from turnout.engine.diagnostics import Diagnostic, sorted_diagnostics
from turnout.engine.model.authz import (
    IstioAuthorizationPolicy,
    LinkerdAuthorizationPolicy,
    MeshTLSAuthentication,
    NetworkAuthentication,
    Server,
    ServerAuthorization,
    ServerV1beta1,
    ServerV1beta2,
)
from turnout.engine.model.base import Resource
from turnout.engine.model.gateway import (
    Gateway,
    GatewayClass,
    ReferenceGrant,
    TCPRoute,
    TLSRoute,
    TLSRouteV1alpha2,
    UDPRoute,
)
from turnout.engine.model.grpcroute import GRPCRoute
from turnout.engine.model.httproute import HTTPRoute
from turnout.engine.model.kinds import Loaded, Resources
from turnout.engine.validate.authz import (
    validate_istio_authorizationpolicy,
    validate_linkerd_authorizationpolicy,
    validate_meshtlsauthentication,
    validate_networkauthentication,
    validate_server,
    validate_serverauthorization,
)
from turnout.engine.validate.common import Channel
from turnout.engine.validate.gateway import (
    validate_gateway,
    validate_gatewayclass,
    validate_referencegrant,
)
from turnout.engine.validate.grpcroute import validate_grpcroute, validate_l4route
from turnout.engine.validate.httproute import validate_httproute

log = logging.getLogger(__name__)

Rule = Callable[[Loaded[Resource], Channel], list[Diagnostic]]


def _route(
    fn: Callable[..., list[Diagnostic]], loaded: Loaded[Resource], channel: Channel
) -> list[Diagnostic]:
    return fn(loaded, channel=channel)


def _plain(
    fn: Callable[..., list[Diagnostic]], loaded: Loaded[Resource], channel: Channel
) -> list[Diagnostic]:
    return fn(loaded)


RULES: dict[type[Resource], Rule] = {
    HTTPRoute: partial(_route, validate_httproute),
    GRPCRoute: partial(_route, validate_grpcroute),
    TLSRoute: partial(_route, validate_l4route),
    TLSRouteV1alpha2: partial(_route, validate_l4route),
    TCPRoute: partial(_route, validate_l4route),
    UDPRoute: partial(_route, validate_l4route),
    Gateway: partial(_plain, validate_gateway),
    GatewayClass: partial(_plain, validate_gatewayclass),
    ReferenceGrant: partial(_plain, validate_referencegrant),
    ServerV1beta1: partial(_plain, validate_server),
    ServerV1beta2: partial(_plain, validate_server),
    Server: partial(_plain, validate_server),
    ServerAuthorization: partial(_plain, validate_serverauthorization),
    LinkerdAuthorizationPolicy: partial(_plain, validate_linkerd_authorizationpolicy),
    MeshTLSAuthentication: partial(_plain, validate_meshtlsauthentication),
    NetworkAuthentication: partial(_plain, validate_networkauthentication),
    IstioAuthorizationPolicy: partial(_plain, validate_istio_authorizationpolicy),
}
"""Model class -> its built-in rules."""


def validate_object(
    loaded: Loaded[Resource], *, channel: Channel = "experimental"
) -> list[Diagnostic]:
    """The built-in rules of one parsed object (none for kinds without CEL rules)."""
    rule = RULES.get(type(loaded.obj))
    return rule(loaded, channel) if rule is not None else []


def validate_resources(
    resources: Resources, *, channel: Channel = "experimental"
) -> list[Diagnostic]:
    """Every built-in rule over every object of a snapshot: the CRDs' CEL rules and list-map
    uniqueness, restated in Python. Errors only; sorted, duplicates dropped.

    `channel` picks the parentRefs and rule-name rules of the standard or experimental CRDs
    (the other rules are the same in both, or concern experimental-only fields).
    """
    diags: list[Diagnostic] = []
    for loaded in resources.objects:
        found = validate_object(loaded, channel=channel)
        if found:
            log.debug("built-in rules found=%d object=%s", len(found), loaded.pos)
        diags.extend(found)
    return sorted_diagnostics(diags)
