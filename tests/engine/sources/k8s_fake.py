"""A fake of the Kubernetes API server, in-process, for the Kubernetes source's tests.

This is a fake, not a cluster: no API server (kind, k3d, envtest's etcd + kube-apiserver)
can run on these machines, so the tests point the *real* `kubernetes` client at this aiohttp
app on 127.0.0.1, port 0 (`FakeApiServer.api_client()` builds an `ApiClient` whose
`Configuration.host` is ``http://127.0.0.1:PORT``). What it reproduces, and nothing more:

- Paths: ``/api/v1/...`` and ``/apis/<group>/<version>/...``; collections across all
  namespaces or in one (``namespaces/<ns>/<plural>``), objects, the ``/status`` subresource.
  A collection that is not served (a CRD not installed) answers 404 with a `Status` body.
- One global resourceVersion counter (etcd's revision): every write takes the next value.
  LIST answers ``{items, metadata: {resourceVersion}}`` with the current revision; items
  carry no `apiVersion`/`kind`, as the real server's list items of built-in kinds do not.
  `limit` is ignored (one page, no `continue`), which a real server may also do.
- WATCH (``?watch=true``) streams JSON lines (chunked) of ADDED/MODIFIED/DELETED events after
  the given resourceVersion, then live ones; BOOKMARK events (only with
  ``allowWatchBookmarks=true``) when `bookmark()` is called; `timeoutSeconds` ends the stream.
  A resourceVersion older than the retained history (the last `history` events; `compact()`
  drops it all) gets HTTP 200 with one ERROR event whose object is a `Status` with code 410,
  then the stream ends, as the real server does ("too old resource version");
  `expire_watches()` sends the same ERROR event on live streams.
- PUT/PATCH (merge patch) of ``/status``: only `status` changes (spec and metadata in the
  body are ignored); a stale `metadata.resourceVersion` answers 409 Conflict; a write that
  changes nothing takes no resourceVersion and sends no event. `apply()` bumps
  `metadata.generation` when anything but metadata and status changed (status writes never
  bump it).
- CRD `status` defaults (`status_defaults`, by kind): an object created without a status
  gets the default, as the Gateway CRD's ``Accepted/Programmed: Unknown, Pending``.
- TokenReview (``POST /apis/authentication.k8s.io/v1/tokenreviews``, 201 Created) for tokens
  registered with `add_token(token, username, audiences)`: `status.authenticated`,
  `status.user.username`, `status.audiences` (the requested ones the token has; the server's
  own, `https://kubernetes.default.svc.cluster.local`, when none is asked), and for an unknown
  token or no common audience `authenticated: false` with `status.error`, as kube-apiserver's
  token authenticators answer.
- Create (POST to a collection: 201, 409 AlreadyExists) and update (PUT of an object:
  everything but `status` replaced, 409 Conflict on a stale `metadata.resourceVersion`, none
  given = unconditional, as for Leases) of any served kind; `LEASES` is
  `coordination.k8s.io/v1 leases` for leader election.
- Injected failures (`fail()`: e.g. 429 with `Retry-After`), hooks that run before a request
  (`before()`, e.g. a concurrent writer causing a 409), a request log (`requests`; `calls`
  adds each request's bearer token, answer status and monotonic time), `hold_watches()`.
- From `k8s_fake_rules.py`: the start-up 503/429 (`start_up()`), RBAC (`enforce(rules)`: 403
  Forbidden with the authorizer's message), EndpointSlice admission (loopback addresses
  refused with 422, empty `endpoints`/`ports` served as null) and the CRD registry (applying
  a CustomResourceDefinition serves its kind, deleting it removes the kind).

`k8s_fake_cluster.ClusterFakeApiServer` (a subclass, for the cluster commands) adds
``/version``, SelfSubjectAccessReviews and the API server's service and pod proxy.

Not reproduced: authentication, schema validation, label selectors, server-side apply,
pagination, watch-list streaming, watch from resourceVersion "0".
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from kubernetes import client as k8s_client

from tests.engine.sources import k8s_fake_rules as rules
from turnout.engine.sources.k8s.rbac import Rule

Obj = dict[str, Any]

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
API_AUDIENCE = "https://kubernetes.default.svc.cluster.local"
"""The API server's own audience: what a token review without audiences checks against."""


@dataclass(frozen=True, slots=True)
class Call:
    """One request as `FakeApiServer.calls` logs it."""

    method: str
    path: str
    token: str
    """The bearer token sent ("" for none): which client it was."""
    status: int
    """The HTTP status answered."""
    at: float
    """`time.monotonic()` when the answer was ready."""


@dataclass(frozen=True, slots=True)
class ServedKind:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


CRD = ServedKind(
    rules.CRD_GROUP, "v1", "customresourcedefinitions", "CustomResourceDefinition", False
)
"""Always served: `apply()` of a CRD object installs the kind it defines."""


@dataclass(slots=True, eq=False)
class _Watcher:
    kind: ServedKind
    namespace: str | None
    bookmarks: bool
    fields: dict[str, str] | None = None
    queue: asyncio.Queue[Obj | None] = field(default_factory=asyncio.Queue)


@dataclass(slots=True)
class _Failure:
    method: str
    path: str
    status: int
    retry_after: str | None
    times: int


@dataclass(slots=True)
class _Hook:
    method: str
    path: str
    fn: Callable[[], None]
    times: int


LEASES = ServedKind("coordination.k8s.io", "v1", "leases", "Lease")


_status = rules.status_body


class FakeApiServer:
    """See the module docstring. Start with ``async with FakeApiServer(kinds) as api``."""

    def __init__(
        self,
        kinds: Iterable[ServedKind],
        *,
        history: int = 1000,
        status_defaults: Mapping[str, Obj] | None = None,
    ) -> None:
        self.status_defaults = dict(status_defaults or {})
        """kind -> the `status` an object created without one gets (a CRD's default)."""
        self.served: dict[tuple[str, str, str], ServedKind] = {
            (k.group, k.version, k.plural): k for k in (*kinds, CRD)
        }
        self.rbac: tuple[Rule, ...] | None = None
        """The ClusterRole rules every request is checked against (`enforce`); None: all."""
        self.user = rules.CONTROLLER_USER
        self.startup: rules.Startup | None = None
        self.refusals: list[tuple[str, str, int]] = []
        """(method, path, status) of every request `k8s_fake_rules.refuse` answered."""
        self.objects: dict[tuple[str, str], dict[tuple[str, str], Obj]] = {}
        """(group, kind) -> (namespace, name) -> stored object (with apiVersion and kind)."""
        self.revision = 1
        self.history: deque[tuple[int, ServedKind, Obj]] = deque(maxlen=history)
        self.compacted = 1
        """Watches from a resourceVersion below this get 410 Gone."""
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.calls: list[Call] = []
        self._watchers: set[_Watcher] = set()
        self._failures: list[_Failure] = []
        self._hooks: list[_Hook] = []
        self._watch_gate = asyncio.Event()
        self._watch_gate.set()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.tokens: dict[str, tuple[str, tuple[str, ...]]] = {}
        """token -> (username, audiences) TokenReview authenticates."""

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> FakeApiServer:
        app = web.Application(middlewares=[self._log_call])
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._watch_gate.set()
        for w in list(self._watchers):
            w.queue.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()

    def api_client(self) -> k8s_client.ApiClient:
        cfg = k8s_client.Configuration()
        cfg.host = self.url
        cfg.connection_pool_maxsize = 64
        return k8s_client.ApiClient(cfg)

    # ------------------------------------------------------------------ test controls

    def install(self, kind: ServedKind) -> None:
        self.served[(kind.group, kind.version, kind.plural)] = kind

    def uninstall(self, kind: ServedKind) -> None:
        self.served.pop((kind.group, kind.version, kind.plural), None)

    def enforce(self, rbac: Iterable[Rule] | None, *, user: str = rules.CONTROLLER_USER) -> None:
        """Check every request against these ClusterRole rules (None: allow everything)."""
        self.rbac = None if rbac is None else tuple(rbac)
        self.user = user

    def start_up(self, *, unavailable_s: float, initializing_s: float) -> None:
        """From the next request on, answer 503 for `unavailable_s`, then 429 for
        `initializing_s` (a server starting)."""
        self.startup = rules.Startup(unavailable_s, initializing_s)

    def apply(self, obj: Obj) -> Obj:
        """Create or update (like `kubectl apply`, but `status`, if given, is stored too);
        an object the real server refuses raises `FakeInvalid` (422)."""
        kind = self._kind_of(obj)
        obj = copy.deepcopy(obj)
        rules.admit(kind, obj)
        meta = obj.setdefault("metadata", {})
        if kind.namespaced:
            meta.setdefault("namespace", "default")
        store = self.objects.setdefault((kind.group, kind.kind), {})
        key = (meta.get("namespace", ""), meta["name"])
        old = store.get(key)
        new = copy.deepcopy(obj)
        nmeta = new["metadata"]
        if old is None:
            if "status" not in new and kind.kind in self.status_defaults:
                new["status"] = copy.deepcopy(self.status_defaults[kind.kind])
            nmeta.update(
                generation=1,
                uid=str(uuid.uuid4()),
                creationTimestamp="2024-01-01T00:00:00Z",
            )
        else:
            ometa = old["metadata"]
            for k in ("uid", "creationTimestamp", "generation"):
                nmeta[k] = ometa[k]
            if _spec_of(old) != _spec_of(new):
                nmeta["generation"] = ometa["generation"] + 1
            if "status" not in new and "status" in old:
                new["status"] = old["status"]
        self._commit(kind, new, "ADDED" if old is None else "MODIFIED")
        if kind is CRD:
            for group, version, plural, name, namespaced in rules.crd_kinds(new):
                self.install(ServedKind(group, version, plural, name, namespaced))
        return copy.deepcopy(new)

    def end_watches(self, kind: ServedKind) -> None:
        """End every open watch of `kind` (its CRD was deleted)."""
        for w in list(self._watchers):
            if w.kind == kind:
                w.queue.put_nowait(None)

    def delete(self, kind: ServedKind, namespace: str, name: str) -> None:
        store = self.objects.get((kind.group, kind.kind), {})
        obj = store.pop((namespace if kind.namespaced else "", name))
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)
        self._emit(kind, "DELETED", obj)
        if kind is CRD:
            rules.crd_removed(self, obj)

    def get(self, kind: ServedKind, namespace: str, name: str) -> Obj:
        store = self.objects[(kind.group, kind.kind)]
        return copy.deepcopy(store[(namespace if kind.namespaced else "", name)])

    def add_token(
        self, token: str, username: str, *, audiences: Iterable[str] = (API_AUDIENCE,)
    ) -> None:
        """A token TokenReview authenticates as `username` for `audiences`."""
        self.tokens[token] = (username, tuple(audiences))

    def bookmark(self) -> None:
        """Send every watcher that asked for bookmarks one at the current revision."""
        for w in list(self._watchers):
            if w.bookmarks:
                mark = {
                    "kind": w.kind.kind,
                    "apiVersion": w.kind.api_version,
                    "metadata": {"resourceVersion": str(self.revision)},
                }
                w.queue.put_nowait({"type": "BOOKMARK", "object": mark})

    def compact(self) -> None:
        """Forget all history: a watch from any older resourceVersion gets 410 Gone."""
        self.history.clear()
        self.compacted = self.revision

    def close_watches(self) -> None:
        """End every open watch stream (as `timeoutSeconds` or a dropped connection would)."""
        for w in list(self._watchers):
            w.queue.put_nowait(None)

    def expire_watches(self) -> None:
        """Send every open watch an ERROR event with code 410, then end it."""
        for w in list(self._watchers):
            msg = "too old resource version (injected)"
            w.queue.put_nowait({"type": "ERROR", "object": _status(410, "Expired", msg)})
            w.queue.put_nowait(None)

    def hold_watches(self) -> None:
        """New watch requests wait (unanswered) until `release_watches()`."""
        self._watch_gate.clear()

    def release_watches(self) -> None:
        self._watch_gate.set()

    def fail(
        self,
        method: str,
        path: str,
        *,
        status: int = 429,
        retry_after: str | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` requests of `method` whose path contains `path` get `status`."""
        self._failures.append(_Failure(method, path, status, retry_after, times))

    def before(self, method: str, path: str, fn: Callable[[], None], *, times: int = 1) -> None:
        """Run `fn` before handling the next `times` matching requests."""
        self._hooks.append(_Hook(method, path, fn, times))

    def count(self, method: str, path: str, *, watch: bool | None = None) -> int:
        return sum(
            1
            for m, p, q in self.requests
            if m == method
            and p == path
            and (watch is None or (q.get("watch") in ("true", "1")) == watch)
        )

    # ------------------------------------------------------------------ internals

    def _kind_of(self, obj: Obj) -> ServedKind:
        group = str(obj["apiVersion"]).rpartition("/")[0]
        for k in self.served.values():
            if k.group == group and k.kind == obj["kind"]:
                return k
        raise KeyError(f"{obj['apiVersion']} {obj['kind']} is not installed in the fake")

    def _commit(self, kind: ServedKind, obj: Obj, event: str) -> None:
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)
        meta = obj["metadata"]
        self.objects.setdefault((kind.group, kind.kind), {})[
            (meta.get("namespace", ""), meta["name"])
        ] = obj
        self._emit(kind, event, obj)

    def _emit(self, kind: ServedKind, event: str, obj: Obj) -> None:
        if len(self.history) == self.history.maxlen:
            self.compacted = self.history[0][0]
        ev = {"type": event, "object": copy.deepcopy(obj)}
        self.history.append((self.revision, kind, ev))
        for w in list(self._watchers):
            if _matches(w, kind, obj):
                w.queue.put_nowait(ev)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.requests.append((request.method, request.path, query))
        for hook in self._hooks:
            if hook.times > 0 and hook.method == request.method and hook.path in request.path:
                hook.times -= 1
                hook.fn()
        refused = rules.refuse(self, request)
        if refused is not None:
            return refused
        for f in self._failures:
            if f.times > 0 and f.method == request.method and f.path in request.path:
                f.times -= 1
                headers = {"Retry-After": f.retry_after} if f.retry_after else {}
                return web.json_response(
                    _status(f.status, "Injected", f"injected {f.status}"),
                    status=f.status,
                    headers=headers,
                )
        if request.method == "POST" and request.path == TOKEN_REVIEWS:
            return await self._token_review(request)
        route = self._route(request.path)
        if route is None:
            return web.json_response(
                _status(404, "NotFound", "the server could not find the requested resource"),
                status=404,
            )
        kind, namespace, name, sub = route
        if name is None:
            if request.method == "POST":
                return await self._create(request, kind, namespace)
            if request.method != "GET":
                return web.json_response(_status(405, "MethodNotAllowed", "no"), status=405)
            fields = _field_selector(query.get("fieldSelector"))
            if isinstance(fields, web.Response):
                return fields
            if query.get("watch") in ("true", "1"):
                return await self._watch(request, kind, namespace, query, fields)
            return web.json_response(self._list(kind, namespace, fields))
        return await self._object(request, kind, namespace or "", name, sub)

    def _route(self, path: str) -> tuple[ServedKind, str | None, str | None, str | None] | None:
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"] and len(parts) >= 3:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        kind = self.served.get((group, version, rest[0]))
        if kind is None or len(rest) > 3:
            return None
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        return kind, namespace, name, sub

    def _list(
        self, kind: ServedKind, namespace: str | None, fields: dict[str, str] | None = None
    ) -> Obj:
        store = self.objects.get((kind.group, kind.kind), {})
        items = []
        for (ns, _), obj in sorted(store.items()):
            if (namespace is None or ns == namespace) and _fields_match(fields, obj):
                item = copy.deepcopy(obj)
                item.pop("apiVersion", None)
                item.pop("kind", None)
                items.append(item)
        return {
            "kind": f"{kind.kind}List",
            "apiVersion": kind.api_version,
            "metadata": {"resourceVersion": str(self.revision)},
            "items": items,
        }

    async def _watch(
        self,
        request: web.Request,
        kind: ServedKind,
        namespace: str | None,
        query: dict[str, str],
        fields: dict[str, str] | None = None,
    ) -> web.StreamResponse:
        await self._watch_gate.wait()
        resp = web.StreamResponse()
        resp.content_type = "application/json"
        await resp.prepare(request)
        since = int(query.get("resourceVersion") or self.revision)
        if since < self.compacted:
            msg = f"too old resource version: {since} ({self.compacted})"
            await _write(resp, {"type": "ERROR", "object": _status(410, "Expired", msg)})
            return resp
        watcher = _Watcher(kind, namespace, query.get("allowWatchBookmarks") == "true", fields)
        # Backlog and registration in one synchronous step: no event can fall between them.
        backlog = [ev for rv, k, ev in self.history if rv > since and _matches(watcher, k, ev)]
        self._watchers.add(watcher)
        timeout = float(query.get("timeoutSeconds") or 1800)
        try:
            async with asyncio.timeout(timeout):
                for old in backlog:
                    await _write(resp, old)
                while (ev := await watcher.queue.get()) is not None:
                    await _write(resp, ev)
        except (TimeoutError, ConnectionResetError):
            pass
        finally:
            self._watchers.discard(watcher)
        return resp

    async def _token_review(self, request: web.Request) -> web.Response:
        review = await request.json()
        spec = review.get("spec") or {}
        wanted = list(spec.get("audiences") or [API_AUDIENCE])
        known = self.tokens.get(str(spec.get("token") or ""))
        status: Obj = {"user": {}}
        if known is None:
            status["error"] = "[invalid bearer token, token lookup failed]"
        else:
            username, audiences = known
            common = [a for a in wanted if a in audiences]
            if not common:
                status["error"] = (
                    f"[invalid bearer token, token audiences {list(audiences)} is invalid for"
                    f" the target audiences {wanted}]"
                )
            else:
                groups = ["system:authenticated"]
                if username.startswith("system:serviceaccount:"):
                    ns = username.split(":")[2]
                    groups += ["system:serviceaccounts", f"system:serviceaccounts:{ns}"]
                status = {
                    "authenticated": True,
                    "user": {"username": username, "uid": str(uuid.uuid4()), "groups": groups},
                    "audiences": common,
                }
        body = {**review, "metadata": {"creationTimestamp": None}, "status": status}
        return web.json_response(body, status=201)

    @web.middleware
    async def _log_call(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        resp: web.StreamResponse = await handler(request)
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip()
        self.calls.append(Call(request.method, request.path, token, resp.status, time.monotonic()))
        return resp

    def _conflict(self, kind: ServedKind, name: str) -> web.Response:
        msg = (
            f'Operation cannot be fulfilled on {kind.plural} "{name}": the object has been '
            "modified; please apply your changes to the latest version and try again"
        )
        return web.json_response(_status(409, "Conflict", msg), status=409)

    async def _create(
        self, request: web.Request, kind: ServedKind, namespace: str | None
    ) -> web.Response:
        """POST to a collection: the object as given (status too), its metadata filled in."""
        body = await request.json()
        meta = body.setdefault("metadata", {})
        name = str(meta.get("name") or "")
        if not name or (kind.namespaced and not namespace):
            msg = "metadata.name: Required value" if not name else "namespace required"
            return web.json_response(_status(422, "Invalid", msg), status=422)
        if kind.namespaced:
            meta["namespace"] = namespace
        store = self.objects.get((kind.group, kind.kind), {})
        if (meta.get("namespace", ""), name) in store:
            msg = f'{kind.plural} "{name}" already exists'
            return web.json_response(_status(409, "AlreadyExists", msg), status=409)
        body.update(apiVersion=kind.api_version, kind=kind.kind)
        meta.update(generation=1, uid=str(uuid.uuid4()), creationTimestamp=_now())
        meta.pop("resourceVersion", None)
        self._commit(kind, body, "ADDED")
        return web.json_response(body, status=201)

    async def _update(self, request: web.Request, kind: ServedKind, current: Obj) -> web.Response:
        """PUT of an object: all but status and the server's metadata from the body."""
        body = await request.json()
        meta, cmeta = body.setdefault("metadata", {}), current["metadata"]
        if meta.get("name", cmeta["name"]) != cmeta["name"]:
            msg = "metadata.name: the name of the object does not match the name on the URL"
            return web.json_response(_status(400, "BadRequest", msg), status=400)
        want = meta.get("resourceVersion")
        if want is not None and want != cmeta["resourceVersion"]:
            return self._conflict(kind, cmeta["name"])
        new = {**body, "apiVersion": kind.api_version, "kind": kind.kind}
        for k in ("name", "namespace", "uid", "creationTimestamp", "generation"):
            if k in cmeta:
                meta[k] = cmeta[k]
        if _spec_of(new) != _spec_of(current):
            meta["generation"] = cmeta.get("generation", 1) + 1
        new.pop("status", None)
        if "status" in current:
            new["status"] = current["status"]
        if new == current:
            return web.json_response(current)
        self._commit(kind, new, "MODIFIED")
        return web.json_response(new)

    async def _object(
        self, request: web.Request, kind: ServedKind, namespace: str, name: str, sub: str | None
    ) -> web.Response:
        store = self.objects.get((kind.group, kind.kind), {})
        key = (namespace if kind.namespaced else "", name)
        current = store.get(key)
        if current is None:
            msg = f'{kind.plural} "{name}" not found'
            return web.json_response(_status(404, "NotFound", msg), status=404)
        if request.method == "GET":
            return web.json_response(current)
        if sub is None and request.method == "PUT":
            return await self._update(request, kind, current)
        if sub != "status" or request.method not in ("PUT", "PATCH"):
            return web.json_response(_status(405, "MethodNotAllowed", "not faked"), status=405)
        body = await request.json()
        want = (body.get("metadata") or {}).get("resourceVersion")
        if want is not None and want != current["metadata"]["resourceVersion"]:
            msg = (
                f'Operation cannot be fulfilled on {kind.plural} "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again"
            )
            return web.json_response(_status(409, "Conflict", msg), status=409)
        new = copy.deepcopy(current)
        if request.method == "PUT":
            new["status"] = body.get("status")
        else:
            new["status"] = _merge_patch(new.get("status") or {}, body.get("status") or {})
        if new == current:  # a no-op write: etcd is not touched, no event
            return web.json_response(current)
        self._commit(kind, new, "MODIFIED")
        return web.json_response(new)


def _matches(w: _Watcher, kind: ServedKind, obj: Obj) -> bool:
    if (w.kind.group, w.kind.kind) != (kind.group, kind.kind):
        return False
    target = obj.get("object", obj)
    if not _fields_match(w.fields, target):
        return False
    if w.namespace is None:
        return True
    return bool((target.get("metadata") or {}).get("namespace") == w.namespace)


_SELECTABLE = frozenset({"type", "metadata.name", "metadata.namespace"})
"""Field selectors this fake serves (what a real server allows for Secrets); others: 400."""


def _field_selector(text: str | None) -> dict[str, str] | web.Response | None:
    """`type=kubernetes.io/tls,metadata.name=x` -> its terms (only `=`; `!=` is not needed)."""
    if not text:
        return None
    terms: dict[str, str] = {}
    for term in text.split(","):
        name, sep, value = term.partition("=")
        if not sep or name not in _SELECTABLE:
            msg = f"field label not supported: {name}"
            return web.json_response(_status(400, "BadRequest", msg), status=400)
        terms[name] = value
    return terms


def _fields_match(fields: dict[str, str] | None, obj: Obj) -> bool:
    if not fields:
        return True
    meta = obj.get("metadata") or {}
    have = {"type": obj.get("type", ""), "metadata.name": meta.get("name", "")}
    have["metadata.namespace"] = meta.get("namespace", "")
    return all(have[k] == v for k, v in fields.items())


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _spec_of(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _merge_patch(target: Obj, patch: Obj) -> Obj:
    """RFC 7386 JSON merge patch."""
    out = dict(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge_patch(out[k], v)
        else:
            out[k] = v
    return out


async def _write(resp: web.StreamResponse, event: Obj) -> None:
    await resp.write(json.dumps(event).encode() + b"\n")
