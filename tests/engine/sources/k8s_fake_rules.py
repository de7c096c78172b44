"""What a real API server enforces that the plain fake (`k8s_fake.py`) would let through.

`FakeApiServer` calls these at three points, and nothing else here keeps state:

```
_handle ──refuse(server, request)──> 503/429 while starting up, 403 by the RBAC rules
apply   ──admit(kind, obj)─────────> 422 Invalid (FakeInvalid), nulls as the server stores them
        ──crd_installed(server, obj)> a CustomResourceDefinition serves its kind
delete  ──crd_removed(server, obj)─> its kind is no longer served, its objects and watches end
```

- Start-up (`Startup`, `FakeApiServer.start_up`): for the first seconds every request gets
  503 "the request has been made before all known HTTP paths have been installed, please
  try again", then 429 "storage is (re)initializing" with `Retry-After: 1`, as
  kube-apiserver answers while it starts (its not-found handler, then the watch cache).
- RBAC (`FakeApiServer.enforce(rules)`): every request is mapped to its verb (get, list,
  watch, create, update, patch, delete, deletecollection) and its resource (``plural`` or
  ``plural/sub``) and checked against the rules (`rbac.Rule`); a refusal is a 403 `Status`
  with the authorizer's message, e.g. ``httproutes.gateway.networking.k8s.io is forbidden:
  User "system:serviceaccount:turnout:turnout-controller" cannot list resource
  "httproutes" in API group "gateway.networking.k8s.io" at the cluster scope``.
- EndpointSlices: an address in the loopback range of an IPv4/IPv6 slice is refused
  (422, "may not be in the loopback range (127.0.0.0/8, ::1/128)"); an empty (or absent)
  `endpoints` or `ports` is stored and served as ``null``, as protobuf storage returns a
  Go nil slice with no `omitempty`.
- CRDs: `customresourcedefinitions.apiextensions.k8s.io` is always served; applying a CRD
  object installs each served version of its kind (and marks it Established), deleting it
  uninstalls the kind, deletes its objects and ends its watches.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from turnout.engine.sources.k8s.rbac import Rule, allowed

if TYPE_CHECKING:
    from tests.engine.sources.k8s_fake import FakeApiServer, ServedKind

Obj = dict[str, Any]

CRD_GROUP = "apiextensions.k8s.io"
CONTROLLER_USER = "system:serviceaccount:turnout:turnout-controller"
"""Who the fake says is asking when it enforces RBAC (the controller's service account)."""
NOT_INSTALLED = (
    "the request has been made before all known HTTP paths have been installed, please try again"
)
INITIALIZING = "storage is (re)initializing"


class FakeInvalid(Exception):
    """An object the real server refuses with 422 Invalid; `status` is its `Status` body."""

    def __init__(self, status: Obj) -> None:
        super().__init__(status["message"])
        self.status = status


def status_body(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


# --------------------------------------------------------------------------- start-up


@dataclass(slots=True)
class Startup:
    """503 for `unavailable_s`, then 429 for `initializing_s`, counted from the first
    request that comes (the server starts when its first client is there, so a slow
    client start-up still sees both)."""

    unavailable_s: float
    initializing_s: float
    began: float | None = None
    """time.monotonic() of the first request; None until then."""


def _starting(startup: Startup | None) -> web.Response | None:
    if startup is None:
        return None
    now = time.monotonic()
    if startup.began is None:
        startup.began = now
    if now < startup.began + startup.unavailable_s:
        body = status_body(503, "ServiceUnavailable", NOT_INSTALLED)
        return web.json_response(body, status=503)
    if now < startup.began + startup.unavailable_s + startup.initializing_s:
        body = status_body(429, "TooManyRequests", INITIALIZING, {"retryAfterSeconds": 1})
        return web.json_response(body, status=429, headers={"Retry-After": "1"})
    return None


# --------------------------------------------------------------------------- RBAC


@dataclass(frozen=True, slots=True)
class Target:
    """What one request path names."""

    group: str
    namespace: str | None
    plural: str
    name: str | None
    sub: str | None


def parse_target(path: str) -> Target | None:
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, rest = parts[1], parts[3:]
    else:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    return Target(group, namespace, rest[0], name, sub)


def verb_of(method: str, target: Target, query: dict[str, str]) -> str:
    """The authorizer's verb of a request (kube-apiserver's RequestInfo)."""
    if method == "GET":
        if query.get("watch") in ("true", "1"):
            return "watch"
        return "get" if target.name else "list"
    if method == "DELETE":
        return "delete" if target.name else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


def forbidden_message(user: str, verb: str, target: Target) -> str:
    resource = f"{target.plural}/{target.sub}" if target.sub else target.plural
    what = f"{target.plural}.{target.group}" if target.group else target.plural
    if target.name:
        what += f' "{target.name}"'
    scope = f'in the namespace "{target.namespace}"' if target.namespace else "at the cluster scope"
    return (
        f'{what} is forbidden: User "{user}" cannot {verb} resource "{resource}" in API group'
        f' "{target.group}" {scope}'
    )


def _forbidden(
    rules: Iterable[Rule] | None, user: str, request: web.Request
) -> web.Response | None:
    if rules is None:
        return None
    target = parse_target(request.path)
    if target is None:
        return None
    verb = verb_of(request.method, target, dict(request.query))
    resource = f"{target.plural}/{target.sub}" if target.sub else target.plural
    if allowed(rules, target.group, resource, verb):
        return None
    details: Obj = {"group": target.group, "kind": target.plural}
    if target.name:
        details["name"] = target.name
    body = status_body(403, "Forbidden", forbidden_message(user, verb, target), details)
    return web.json_response(body, status=403)


def refuse(server: FakeApiServer, request: web.Request) -> web.Response | None:
    """The answer a real server gives before it even looks at the object, if any."""
    resp = _starting(server.startup) or _forbidden(server.rbac, server.user, request)
    if resp is not None:
        server.refusals.append((request.method, request.path, resp.status))
    return resp


# --------------------------------------------------------------------------- admission


def admit(kind: ServedKind, obj: Obj) -> None:
    """Validate and default `obj` (in place) as the server stores it; FakeInvalid if not."""
    if kind.group == CRD_GROUP:
        crd_established(obj)
    if kind.kind != "EndpointSlice":
        return
    name = (obj.get("metadata") or {}).get("name", "")
    if obj.get("addressType") in ("IPv4", "IPv6"):
        for i, ep in enumerate(obj.get("endpoints") or ()):
            for j, addr in enumerate(ep.get("addresses") or ()):
                try:
                    loopback = ipaddress.ip_address(addr).is_loopback
                except ValueError:
                    continue
                if loopback:
                    msg = (
                        f'EndpointSlice.discovery.k8s.io "{name}" is invalid: endpoints[{i}]'
                        f'.addresses[{j}]: Invalid value: "{addr}": may not be in the loopback'
                        " range (127.0.0.0/8, ::1/128)"
                    )
                    raise FakeInvalid(status_body(422, "Invalid", msg))
    for key in ("endpoints", "ports"):
        if not obj.get(key):
            obj[key] = None


# --------------------------------------------------------------------------- CRDs


def crd_kinds(obj: Obj) -> list[tuple[str, str, str, str, bool]]:
    """(group, version, plural, kind, namespaced) of each version a CRD object serves."""
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    namespaced = spec.get("scope", "Namespaced") == "Namespaced"
    return [
        (spec["group"], v["name"], names["plural"], names["kind"], namespaced)
        for v in spec.get("versions") or ()
        if v.get("served", True)
    ]


def crd_object(kind: ServedKind) -> Obj:
    """A minimal CustomResourceDefinition serving `kind` (what `mesh install --crds` or a
    vendor's CRD bundle would apply)."""
    return {
        "apiVersion": f"{CRD_GROUP}/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{kind.group}"},
        "spec": {
            "group": kind.group,
            "names": {"kind": kind.kind, "plural": kind.plural},
            "scope": "Namespaced" if kind.namespaced else "Cluster",
            "versions": [
                {
                    "name": kind.version,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object"}},
                }
            ],
        },
    }


def crd_established(obj: Obj) -> None:
    """The status the server's CRD controllers give an accepted CRD (in place)."""
    names = (obj.get("spec") or {}).get("names") or {}
    obj["status"] = {
        "acceptedNames": dict(names),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts"},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"},
        ],
        "storedVersions": [v["name"] for v in obj["spec"].get("versions") or ()],
    }


def crd_removed(server: FakeApiServer, obj: Obj) -> None:
    """A CRD was deleted: its kind is not served, its objects go, its watches end."""
    for group, version, plural, _, _ in crd_kinds(obj):
        kind = server.served.get((group, version, plural))
        if kind is not None:
            server.uninstall(kind)
            server.objects.pop((kind.group, kind.kind), None)
            server.end_watches(kind)
