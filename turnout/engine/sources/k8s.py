r"""The Kubernetes source: list+watch what the compiler reads, publish snapshots, write status.

One guarded task per kind (``k8s-watch-<Kind>``) runs this state machine; a publisher task
(``k8s-snapshots``) turns the per-kind stores into debounced snapshots.

```
        ┌─────────────── 410 Gone (HTTP status or ERROR event code 410) ──────────────┐
        v                                                                              │
  ──> LIST ──ok: store := items, rv := list rv──> WATCH(rv) ──event/BOOKMARK: rv := object rv
       │ ^                                         │  ^ │
       │ │                                         │  │ └─ stream ended (timeoutSeconds): WATCH(rv)
       │ │                                         │  └─── transient (0/429/5xx, inactivity):
       │ │                                         │       backoff "attempt #n/N", WATCH(rv)
       │ │   COOLDOWN <── attempts exhausted, 401/403/other ──┘ (store kept, last known)
       │ └──────┘
       └─ 404 ──> MISSING (CRD not installed: logged once, store emptied, LIST again slowly)
```

Every request is retried on transient failures (no answer, 429, 5xx) with exponential backoff
and jitter from `KubernetesSettings`; a `Retry-After` header is a floor on the wait. A watch
has a server-side `timeoutSeconds` and a client-side inactivity timeout that every line
(event or bookmark) pushes back.

Snapshots::

    store[kind][(ns, name)] = raw --change--> dirty --debounce--> parse_document (cached per
    object version, file ``k8s:<Kind>/<ns>/<name>``, doc 0) --> Resources + diagnostics
    --> on_snapshot(resources, diagnostics)

The first snapshot waits until every kind has listed once (or is known missing or failing),
so the compiler never sees routes without their Services. A status-only change of a route
(our own write-back, or another controller's) does not publish a snapshot: that would only
feed the write-back loop. SMI kinds are kept raw (`Snapshot.unparsed`) for the SMI adapter.

Status write-back (`write_route_status`) GETs each route, replaces the `status.parents`
entries whose `controllerName` is ours, keeps every other controller's entry, keeps
`lastTransitionTime` while a condition's status and reason are unchanged, skips the write
when nothing changed, and PUTs the status subresource with the object's `resourceVersion`,
re-GETting on 409 Conflict. A route whose generation moved past the compiled one is skipped
(`stale`): the watch is already bringing the snapshot that will produce its status.

The kubernetes client is synchronous (urllib3). Every call runs in this source's own thread
pool, never on the loop; a dedicated pool because each watch holds a thread for as long as
it streams and would starve `asyncio.to_thread`. Only this module catches kubernetes and
urllib3 errors: `_mapped_errors` turns them into `KubernetesApiError` (a `SourceError`).
urllib3's own status retries (which sleep on `Retry-After` inside the client) are switched
off on the client's pool, so every retry is ours: logged, jittered and bounded.
It deliberately does not validate (schemas, CEL) or compile: that is the pipeline's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import email.utils
import functools
import inspect
import json
import logging
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar, cast

import urllib3

# Recent kubernetes releases ship py.typed, older ones do not: accept both.
from kubernetes import client as k8s_client  # type: ignore[import-untyped, unused-ignore]
from kubernetes import config as k8s_config

from turnout.engine import ir
from turnout.engine.config import CONTROLLER_NAME, POLICY_GROUP
from turnout.engine.diagnostics import Diagnostic, SourcePos, info, sorted_diagnostics
from turnout.engine.errors import SourceError
from turnout.engine.model import Document, Loaded, Resource, Resources, parse_document

log = logging.getLogger(__name__)

T = TypeVar("T")
Raw = dict[str, Any]
"""A JSON object as the API server sends it (narrowed only by `engine.model`)."""

GW = "gateway.networking.k8s.io"
TEXT_ERROR_MAX = 256
"""Foreign error bodies are truncated to this many characters in messages and logs."""


# --------------------------------------------------------------------------- kinds


@dataclass(frozen=True, slots=True, kw_only=True)
class KindSpec:
    """One watched collection."""

    kind: str
    group: str
    """API group; "" = core."""
    version: str
    plural: str
    namespaced: bool = True
    parse: bool = True
    """False: kept raw for an adapter (SMI), not run through `parse_document`."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """Collection (all namespaces) or object path."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace and self.namespaced:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


WATCHED_KINDS: tuple[KindSpec, ...] = (
    KindSpec(kind="HTTPRoute", group=GW, version="v1", plural="httproutes"),
    KindSpec(kind="GRPCRoute", group=GW, version="v1", plural="grpcroutes"),
    KindSpec(kind="Gateway", group=GW, version="v1", plural="gateways"),
    KindSpec(
        kind="GatewayClass", group=GW, version="v1", plural="gatewayclasses", namespaced=False
    ),
    KindSpec(kind="ReferenceGrant", group=GW, version="v1beta1", plural="referencegrants"),
    KindSpec(kind="Service", group="", version="v1", plural="services"),
    KindSpec(kind="EndpointSlice", group="discovery.k8s.io", version="v1", plural="endpointslices"),
    KindSpec(kind="Namespace", group="", version="v1", plural="namespaces", namespaced=False),
    KindSpec(
        kind="FaultInjection", group=POLICY_GROUP, version="v1alpha1", plural="faultinjections"
    ),
    KindSpec(
        kind="XBackendTrafficPolicy",
        group="gateway.networking.x-k8s.io",
        version="v1alpha1",
        plural="xbackendtrafficpolicies",
    ),
    KindSpec(
        # v1alpha1: what Flagger's linkerd provider writes, and our CRD's storage version
        # (the SMI CRDs convert with strategy None, so this is how every object reads).
        kind="TrafficSplit",
        group="split.smi-spec.io",
        version="v1alpha1",
        plural="trafficsplits",
    ),
    KindSpec(
        kind="HTTPRouteGroup",
        group="specs.smi-spec.io",
        version="v1alpha4",
        plural="httproutegroups",
    ),
)
"""Every kind the compiler (or the SMI adapter) reads, at the version we list it."""

ROUTE_KINDS = {k.kind: k for k in WATCHED_KINDS if k.kind in ("HTTPRoute", "GRPCRoute")}


# --------------------------------------------------------------------------- settings, errors


@dataclass(frozen=True, slots=True, kw_only=True)
class KubernetesSettings:
    """Timeouts and backoffs of the Kubernetes source (seconds, floats as kopf's settings)."""

    debounce_s: float = 0.1
    """Changes within this window after the first one are published as one snapshot
    (a coalescing window, so constant churn still publishes every `debounce_s`)."""
    request_timeout_s: float = 30.0
    """Deadline of one LIST page, GET or PUT."""
    connect_timeout_s: float = 10.0
    watch_timeout_s: int = 300
    """Server-side `timeoutSeconds` of a watch; it then ends and is reopened from the rv."""
    inactivity_timeout_s: float = 330.0
    """No line (event or bookmark) for this long: the watch is dead; reopen it."""
    attempts: int = 5
    """Tries of one request (or watch reopen) on transient failures before a cooldown."""
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    jitter: float = 0.2
    """Each wait is multiplied by uniform(1, 1 + jitter): never shorter than asked."""
    retry_after_max_s: float = 300.0
    """Cap on a server's `Retry-After`."""
    cooldown_s: float = 30.0
    """Wait before relisting a kind whose attempts are exhausted or that got 401/403."""
    missing_kind_retry_s: float = 60.0
    """Wait between LISTs of a kind whose CRD is not installed (404)."""
    page_size: int = 500
    """LIST `limit`; pages are followed with `continue`."""
    status_attempts: int = 5
    """GET+PUT rounds of one route status on 409 Conflict."""
    status_concurrency: int = 8
    """Route statuses written at the same time."""


DEFAULT_KUBERNETES_SETTINGS = KubernetesSettings()


class KubernetesApiError(SourceError):
    """The API server answered with an error, or did not answer (`status` 0)."""

    def __init__(self, message: str, *, status: int, retry_after: float | None = None) -> None:
        super().__init__(f"{message} (status {status})" if status else message)
        self.message = message
        self.status = status
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[object, tuple[str]]:
        again = functools.partial(type(self), status=self.status, retry_after=self.retry_after)
        return again, (self.message,)

    @property
    def transient(self) -> bool:
        """Worth retrying as is: no answer, 429 Too Many Requests or a 5xx."""
        return self.status in (0, 429) or self.status >= 500


class _Expired(Exception):
    """410 Gone: the resourceVersion is older than the server's history; relist."""


@contextlib.contextmanager
def _mapped_errors(what: str) -> Iterator[None]:
    """The boundary: kubernetes/urllib3/socket errors become `KubernetesApiError`."""
    try:
        yield
    except k8s_client.ApiException as exc:
        raise _api_error(what, int(exc.status or 0), exc.body, exc.headers) from exc
    except (urllib3.exceptions.HTTPError, OSError, json.JSONDecodeError) as exc:
        raise KubernetesApiError(f"{what}: {type(exc).__name__}: {exc}", status=0) from exc


def _api_error(
    what: str, status: int, body: object, headers: Mapping[str, str] | None
) -> KubernetesApiError:
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    text = str(body or "")
    with contextlib.suppress(ValueError, AttributeError):
        text = str(json.loads(text).get("message") or text)
    return KubernetesApiError(
        f"{what}: {text[:TEXT_ERROR_MAX]}",
        status=status,
        retry_after=_retry_after((headers or {}).get("Retry-After")),
    )


def _retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


# --------------------------------------------------------------------------- blocking HTTP


def api_client_from_environment(
    *, kubeconfig: str | None = None, context: str | None = None, in_cluster: bool | None = None
) -> Any:
    """An `ApiClient` from the in-cluster service account or a kubeconfig (blocking: file
    reads; call it with `asyncio.to_thread`). `in_cluster=None` tries in-cluster first."""
    with _mapped_errors("load kubernetes config"):
        try:
            if in_cluster is not False:
                cfg = k8s_client.Configuration()
                k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
                return k8s_client.ApiClient(cfg)
        except k8s_config.ConfigException as exc:
            if in_cluster:
                raise SourceError(f"in-cluster config: {exc}") from exc
        try:
            api = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context
            )
        except k8s_config.ConfigException as exc:
            raise SourceError(f"kubeconfig: {exc}") from exc
        return api


def _tune_pool(api: Any, settings: KubernetesSettings) -> None:
    """Make the client's urllib3 pool fit a long-running source.

    urllib3 by default retries a 429/503 that has `Retry-After` by sleeping in the calling
    thread, and re-sends after read errors; our backoff owns retries (logged, jittered,
    bounded), so only connection establishment is retried below us. One pooled connection
    per watch plus the status writers, or urllib3 opens and discards extra ones."""
    kw = api.rest_client.pool_manager.connection_pool_kw
    kw["retries"] = urllib3.Retry(
        total=2, connect=2, read=0, redirect=0, status=0, respect_retry_after_header=False
    )
    kw["maxsize"] = max(
        int(kw.get("maxsize") or 1), len(WATCHED_KINDS) + settings.status_concurrency + 2
    )


class _Stream:
    """An open watch response; `next_line` blocks, `abort` (any thread) unblocks it."""

    def __init__(self, resp: Any, what: str) -> None:
        self._resp = resp
        self._what = what
        self._chunks: Iterator[bytes] = resp.stream(2**16, decode_content=True)
        self._buf = b""

    def next_line(self) -> bytes | None:
        """The next non-empty line; None when the server ended the stream."""
        with _mapped_errors(self._what):
            while True:
                line, sep, rest = self._buf.partition(b"\n")
                if sep:
                    self._buf = rest
                    if line.strip():
                        return line
                    continue
                chunk = next(self._chunks, None)
                if chunk is None:
                    return None
                self._buf += chunk

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._resp.shutdown()  # SHUT_RD wakes a reader blocked in recv()
        with contextlib.suppress(Exception):
            self._resp.release_conn()


class _Http:
    """The raw HTTP of the kubernetes `ApiClient` (auth, TLS, host); every method blocks."""

    def __init__(self, api: Any, settings: KubernetesSettings) -> None:
        _tune_pool(api, settings)
        self._api = api
        self._settings = settings

    def _send(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        body: Raw | None,
        read: float,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        m, url, hdrs, payload, _ = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        timeout = (self._settings.connect_timeout_s, read)
        return self._api.call_api(
            m, url, header_params=hdrs, body=payload, _request_timeout=timeout
        ).response

    def request(
        self, method: str, path: str, query: Sequence[tuple[str, str]] = (), body: Raw | None = None
    ) -> Raw:
        what = f"{method} {path}"
        with _mapped_errors(what):
            resp = self._send(method, path, query, body, self._settings.request_timeout_s)
            data: bytes = resp.data
            if not 200 <= resp.status < 300:
                raise _api_error(what, resp.status, data, resp.headers)
            return cast(Raw, json.loads(data))

    def watch(self, path: str, query: Sequence[tuple[str, str]]) -> _Stream:
        what = f"WATCH {path}"
        # The read timeout backs up the loop's inactivity timeout so the thread ends too.
        read = self._settings.inactivity_timeout_s + 5
        with _mapped_errors(what):
            resp = self._send("GET", path, query, None, read)
            if resp.status != 200:
                data = resp.data
                resp.release_conn()
                raise _api_error(what, resp.status, data, resp.headers)
        return _Stream(resp, what)


# --------------------------------------------------------------------------- the source


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    version: int
    """1, 2, 3 ... per published snapshot."""
    resources: Resources
    diagnostics: tuple[Diagnostic, ...]
    """Schema findings of the objects (invalid ones are left out) and kinds not installed."""
    unparsed: Mapping[str, tuple[Mapping[str, object], ...]]
    """Raw objects of kinds kept for adapters (`TrafficSplit`, `HTTPRouteGroup`)."""


OnSnapshot = Callable[[Resources, Sequence[Diagnostic]], Awaitable[None] | None]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(slots=True)
class _Entry:
    raw: Raw
    parsed: tuple[Loaded[Resource] | None, tuple[Diagnostic, ...]] | None = None


@dataclass(slots=True)
class _KindState:
    spec: KindSpec
    objects: dict[tuple[str, str], _Entry] = field(default_factory=dict)
    resource_version: str | None = None
    synced: bool = False
    missing: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusWrite:
    route: ir.SourceRef
    outcome: Literal["written", "unchanged", "stale", "missing", "failed"]
    """`stale`: the route changed since the compile (a newer snapshot is coming)."""


class KubernetesSource:
    """List+watch the API server and publish snapshots; write route status back.

    `api_client` is a kubernetes `ApiClient` (see `api_client_from_environment`; tests pass
    one pointed at a fake server). `on_snapshot(resources, diagnostics)` may be sync or
    async; the latest snapshot, with the raw SMI objects, is also `self.latest`. `sleep` and
    `rng` are the seams for backoff waits. Use ``async with`` or `start()`/`stop()`.
    """

    def __init__(
        self,
        api_client: Any,
        *,
        on_snapshot: OnSnapshot,
        settings: KubernetesSettings = DEFAULT_KUBERNETES_SETTINGS,
        kinds: Sequence[KindSpec] = WATCHED_KINDS,
        controller_name: str = CONTROLLER_NAME,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._http = _Http(api_client, settings)
        self._on_snapshot = on_snapshot
        self._settings = settings
        self._controller = controller_name
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._clock = clock
        self._states = {k.kind: _KindState(k) for k in kinds}
        self._dirty = asyncio.Event()
        self._synced = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        workers = len(self._states) + settings.status_concurrency + 2
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="turnout-k8s")
        self.latest: Snapshot | None = None

    # ---------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> KubernetesSource:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start one watch task per kind and the publisher; returns at once."""
        for state in self._states.values():
            self._spawn(self._run_kind(state), f"k8s-watch-{state.spec.kind}")
        self._spawn(self._publish(), "k8s-snapshots")

    async def stop(self) -> None:
        """Cancel every task and wait for it; then release the threads (the source, and
        `write_route_status`, cannot be used after this)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def resource_version(self, kind: str) -> str | None:
        """The last resourceVersion seen for `kind` (from a list, an event or a bookmark)."""
        return self._states[kind].resource_version

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        self._tasks.append(asyncio.create_task(_guard(coro, name), name=name))

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # ---------------------------------------------------------------- requests and backoff

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        s = self._settings
        base = min(s.backoff_max_s, s.backoff_base_s * 2.0 ** (attempt - 1))
        if retry_after is not None:
            base = max(base, min(retry_after, s.retry_after_max_s))
        return base * self._rng.uniform(1.0, 1.0 + s.jitter)

    async def _backoff(self, exc: KubernetesApiError, attempt: int) -> None:
        delay = self._delay(attempt, exc.retry_after)
        log.warning(
            "request failed %s; retrying attempt #%d/%d in %.2fs",
            exc,
            attempt + 1,
            self._settings.attempts,
            delay,
        )
        await self._sleep(delay)

    async def _request(
        self, method: str, path: str, query: Sequence[tuple[str, str]] = (), body: Raw | None = None
    ) -> Raw:
        """One request, retried on transient failures (see `KubernetesSettings.attempts`)."""
        s = self._settings
        for attempt in range(1, s.attempts + 1):
            try:
                async with asyncio.timeout(s.request_timeout_s + s.connect_timeout_s + 1):
                    return await self._in_thread(self._http.request, method, path, query, body)
            except TimeoutError:
                exc = KubernetesApiError(f"{method} {path}: no answer in time", status=0)
                if attempt == s.attempts:
                    raise exc from None
            except KubernetesApiError as err:
                if not err.transient or attempt == s.attempts:
                    raise
                exc = err
            await self._backoff(exc, attempt)
        raise AssertionError("unreachable")

    # ---------------------------------------------------------------- list + watch

    async def _run_kind(self, state: _KindState) -> None:
        spec = state.spec
        while True:
            try:
                await self._list(state)
                await self._watch(state)
            except _Expired:
                log.info(
                    "watch expired kind=%s rv=%s; relisting", spec.kind, state.resource_version
                )
            except KubernetesApiError as exc:
                if exc.status == 404:
                    await self._missing(state)
                    continue
                log.error(
                    "kind failed kind=%s: %s; relisting in %.0fs",
                    spec.kind,
                    exc,
                    self._settings.cooldown_s,
                )
                self._mark_synced(state)
                await self._sleep(self._settings.cooldown_s)

    async def _missing(self, state: _KindState) -> None:
        if not state.missing:
            log.warning(
                "kind not installed kind=%s api=%s; retrying every %.0fs",
                state.spec.kind,
                state.spec.api_version,
                self._settings.missing_kind_retry_s,
            )
        state.missing = True
        if state.objects:
            state.objects = {}
            self._dirty.set()
        self._mark_synced(state)
        await self._sleep(self._settings.missing_kind_retry_s)

    async def _list(self, state: _KindState) -> None:
        spec = state.spec
        items: dict[tuple[str, str], _Entry] = {}
        token = ""
        while True:
            query = [("limit", str(self._settings.page_size))]
            if token:
                query.append(("continue", token))
            try:
                page = await self._request("GET", spec.path(), query)
            except KubernetesApiError as exc:
                if exc.status == 410:  # the continue token expired: start over
                    raise _Expired from exc
                raise
            for raw in page.get("items") or ():
                entry = self._entry(state, raw)
                items[_key(entry.raw)] = entry
            meta = page.get("metadata") or {}
            token = str(meta.get("continue") or "")
            if not token:
                break
        if state.missing:
            log.info("kind installed kind=%s api=%s", spec.kind, spec.api_version)
            state.missing = False
        state.resource_version = str(meta.get("resourceVersion") or "") or None
        old = {k: e.raw["metadata"].get("resourceVersion") for k, e in state.objects.items()}
        new = {k: e.raw["metadata"].get("resourceVersion") for k, e in items.items()}
        if old != new:
            state.objects = items
            self._dirty.set()
        log.info("listed kind=%s objects=%d rv=%s", spec.kind, len(items), state.resource_version)
        self._mark_synced(state)

    async def _watch(self, state: _KindState) -> None:
        """Watch from the state's rv until an error that needs a relist (raised)."""
        s = self._settings
        failures = 0
        while True:
            query = [
                ("watch", "true"),
                ("allowWatchBookmarks", "true"),
                ("resourceVersion", state.resource_version or ""),
                ("timeoutSeconds", str(s.watch_timeout_s)),
            ]
            try:
                stream = await self._open_watch(state.spec, query)
                try:
                    while (line := await self._next_line(stream)) is not None:
                        self._apply(state, line)
                        failures = 0
                finally:
                    stream.abort()
                log.debug("watch ended kind=%s rv=%s", state.spec.kind, state.resource_version)
            except KubernetesApiError as exc:
                if exc.status == 410:
                    raise _Expired from exc
                failures += 1
                if not exc.transient or failures >= s.attempts:
                    raise
                await self._backoff(exc, failures)

    async def _open_watch(self, spec: KindSpec, query: Sequence[tuple[str, str]]) -> _Stream:
        s = self._settings
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._pool, self._http.watch, spec.path(), query)
        try:
            async with asyncio.timeout(s.request_timeout_s + s.connect_timeout_s + 1):
                return await asyncio.shield(fut)
        except TimeoutError:
            fut.add_done_callback(_abort_opened)
            raise KubernetesApiError(f"WATCH {spec.path()}: no answer in time", status=0) from None
        except asyncio.CancelledError:
            fut.add_done_callback(_abort_opened)  # the stream may still open: close it then
            raise

    async def _next_line(self, stream: _Stream) -> bytes | None:
        try:
            async with asyncio.timeout(self._settings.inactivity_timeout_s):
                return await self._in_thread(stream.next_line)
        except TimeoutError:
            secs = self._settings.inactivity_timeout_s
            raise KubernetesApiError(f"watch inactive for {secs:.0f}s", status=0) from None

    def _apply(self, state: _KindState, line: bytes) -> None:
        """Apply one watch line; raises `_Expired` on an ERROR event with code 410."""
        try:
            event = json.loads(line)
            kind, obj = event["type"], event["object"]
        except (ValueError, KeyError, TypeError) as exc:
            raise KubernetesApiError(
                f"bad watch line: {line[:TEXT_ERROR_MAX]!r}", status=0
            ) from exc
        if kind == "ERROR":
            code = int(obj.get("code") or 0)
            if code == 410:
                raise _Expired
            raise KubernetesApiError(f"watch error: {obj.get('message', '')}", status=code)
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if kind in ("ADDED", "MODIFIED"):
            entry = self._entry(state, obj)
            key = _key(entry.raw)
            old = state.objects.get(key)
            state.objects[key] = entry
            if old is None or not _status_only_change(state.spec, old.raw, entry.raw):
                self._dirty.set()
        elif kind == "DELETED":
            if state.objects.pop(_key(obj), None) is not None:
                self._dirty.set()
        elif kind != "BOOKMARK":
            log.debug("unknown watch event type=%s kind=%s", kind, state.spec.kind)
        if rv:
            state.resource_version = str(rv)
        log.debug("watch event type=%s kind=%s rv=%s", kind, state.spec.kind, rv)

    def _entry(self, state: _KindState, raw: Raw) -> _Entry:
        # LIST items carry no apiVersion/kind; every parser needs them.
        raw = {**raw, "apiVersion": state.spec.api_version, "kind": state.spec.kind}
        raw.setdefault("metadata", {})
        return _Entry(raw)

    def _mark_synced(self, state: _KindState) -> None:
        state.synced = True
        if all(s.synced for s in self._states.values()):
            self._synced.set()

    # ---------------------------------------------------------------- snapshots

    async def _publish(self) -> None:
        await self._synced.wait()
        self._dirty.set()  # the first snapshot, even when everything is empty
        version = 0
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self._settings.debounce_s)
            self._dirty.clear()
            snapshot = await self._snapshot(version + 1)
            version = snapshot.version
            self.latest = snapshot
            log.info(
                "snapshot published version=%d objects=%d diagnostics=%d",
                version,
                len(snapshot.resources.objects),
                len(snapshot.diagnostics),
            )
            try:
                result = self._on_snapshot(snapshot.resources, snapshot.diagnostics)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("snapshot callback failed version=%d", version)

    async def _snapshot(self, version: int) -> Snapshot:
        todo = [
            (state.spec, e)
            for state in self._states.values()
            if state.spec.parse
            for e in state.objects.values()
            if e.parsed is None
        ]
        # Parsing thousands of objects would stall the loop; only new versions are parsed.
        results = await asyncio.to_thread(lambda: [_parse(spec, e.raw) for spec, e in todo])
        for (_, e), result in zip(todo, results, strict=True):
            e.parsed = result
        objects: list[Loaded[Resource]] = []
        diags: list[Diagnostic] = []
        unparsed: dict[str, tuple[Mapping[str, object], ...]] = {}
        for state in self._states.values():
            spec = state.spec
            if state.missing:
                msg = f"{spec.kind} ({spec.api_version}) is not installed in the cluster"
                diags.append(info("KindNotInstalled", msg, SourcePos(f"k8s:{spec.kind}", 0)))
            entries = [state.objects[k] for k in sorted(state.objects)]
            if not spec.parse:
                unparsed[spec.kind] = tuple(e.raw for e in entries)
                continue
            for e in entries:
                if e.parsed is None:  # arrived while the others were parsed
                    e.parsed = _parse(spec, e.raw)
                loaded, found = e.parsed
                diags.extend(found)
                if loaded is not None:
                    objects.append(loaded)
        return Snapshot(
            version=version,
            resources=Resources(tuple(objects)),
            diagnostics=tuple(sorted_diagnostics(diags)),
            unparsed=unparsed,
        )

    # ---------------------------------------------------------------- status write-back

    async def write_route_status(self, statuses: Sequence[ir.RouteStatus]) -> list[StatusWrite]:
        """Write Turnout's `status.parents` entries of each route (see module docstring)."""
        gate = asyncio.Semaphore(self._settings.status_concurrency)

        async def one(st: ir.RouteStatus) -> StatusWrite:
            async with gate:
                return await self._write_status(st)

        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(one(st), name=f"k8s-status-{st.route.kind}/{st.route.name}")
                for st in statuses
            ]
        return [t.result() for t in tasks]

    async def _write_status(self, st: ir.RouteStatus) -> StatusWrite:
        ref = st.route
        spec = ROUTE_KINDS.get(ref.kind)
        if spec is None:
            log.error(
                "status not written route=%s/%s/%s: kind unsupported",
                ref.kind,
                ref.namespace,
                ref.name,
            )
            return StatusWrite(route=ref, outcome="failed")
        path = spec.path(ref.namespace, ref.name)
        attempts = self._settings.status_attempts
        try:
            for attempt in range(1, attempts + 1):
                obj = await self._request("GET", path)
                meta = obj.get("metadata") or {}
                if int(meta.get("generation") or 1) > st.generation:
                    return StatusWrite(route=ref, outcome="stale")
                old = list((obj.get("status") or {}).get("parents") or [])
                now = self._clock().strftime("%Y-%m-%dT%H:%M:%SZ")
                spec_refs = list((obj.get("spec") or {}).get("parentRefs") or [])
                new = merge_route_parents(
                    old, st, controller=self._controller, now=now, spec_refs=spec_refs
                )
                if new == old:
                    return StatusWrite(route=ref, outcome="unchanged")
                body = copy.deepcopy(obj)
                body.setdefault("status", {})["parents"] = new
                try:
                    await self._request("PUT", f"{path}/status", body=body)
                except KubernetesApiError as exc:
                    if exc.status != 409:
                        raise
                    log.info(
                        "status conflict route=%s/%s/%s; re-reading attempt #%d/%d",
                        ref.kind,
                        ref.namespace,
                        ref.name,
                        attempt + 1,
                        attempts,
                    )
                    continue
                log.info(
                    "status written route=%s/%s/%s parents=%d",
                    ref.kind,
                    ref.namespace,
                    ref.name,
                    len(st.parents),
                )
                return StatusWrite(route=ref, outcome="written")
            log.error(
                "status not written route=%s/%s/%s: %d conflicts",
                ref.kind,
                ref.namespace,
                ref.name,
                attempts,
            )
        except KubernetesApiError as exc:
            if exc.status == 404:
                return StatusWrite(route=ref, outcome="missing")
            log.error(
                "status not written route=%s/%s/%s: %s", ref.kind, ref.namespace, ref.name, exc
            )
        return StatusWrite(route=ref, outcome="failed")


# --------------------------------------------------------------------------- pure helpers


async def _guard(coro: Awaitable[None], name: str) -> None:
    """Log a crash or an unexpected exit of a background task (kopf's `guard`)."""
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("task crashed task=%s", name)
    else:
        log.error("task exited unexpectedly task=%s", name)


def _abort_opened(fut: asyncio.Future[_Stream]) -> None:
    if not fut.cancelled() and fut.exception() is None:
        fut.result().abort()


def _key(raw: Mapping[str, Any]) -> tuple[str, str]:
    meta = raw.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _parse(spec: KindSpec, raw: Raw) -> tuple[Loaded[Resource] | None, tuple[Diagnostic, ...]]:
    ns, name = _key(raw)
    where = f"{ns}/{name}" if spec.namespaced else name
    doc = Document(pos=SourcePos(f"k8s:{spec.kind}/{where}", 0), raw=raw)
    loaded, diags = parse_document(doc)
    return loaded, tuple(diags)


_VOLATILE_META = ("resourceVersion", "managedFields")


def _status_only_change(spec: KindSpec, old: Raw, new: Raw) -> bool:
    """True when a route changed only in status (and bookkeeping): nothing to recompile."""
    if spec.kind not in ROUTE_KINDS:
        return False

    def content(raw: Raw) -> Raw:
        meta = {k: v for k, v in (raw.get("metadata") or {}).items() if k not in _VOLATILE_META}
        return {**{k: v for k, v in raw.items() if k != "status"}, "metadata": meta}

    return content(old) == content(new)


def parent_ref_to_wire(ref: ir.ParentRefKey) -> Raw:
    out: Raw = {"group": ref.group, "kind": ref.kind, "namespace": ref.namespace, "name": ref.name}
    if ref.section_name is not None:
        out["sectionName"] = ref.section_name
    if ref.port is not None:
        out["port"] = ref.port
    return out


def _ref_key(ref: Mapping[str, Any], route_ns: str) -> tuple[object, ...]:
    """A `parentRef` with Gateway API defaults applied, for matching old entries to ours."""
    return (
        ref.get("group", GW),
        ref.get("kind", "Gateway"),
        ref.get("namespace") or route_ns,
        ref.get("name"),
        ref.get("sectionName"),
        ref.get("port"),
    )


def merge_route_parents(
    old: Sequence[Mapping[str, Any]],
    status: ir.RouteStatus,
    *,
    controller: str,
    now: str,
    spec_refs: Sequence[Mapping[str, Any]] = (),
) -> list[Raw]:
    """`status.parents` with our entries replaced by `status` and every other kept as is.

    Other controllers' entries keep their place; ours follow in compile order. A condition
    keeps its old `lastTransitionTime` while its status and reason are unchanged. Each
    `parentRef` is the route's own `spec.parentRefs` entry, copied as written when one
    matches (Flagger compares them field by field: a namespace we filled in would not
    match a ref written without one)."""
    ns = status.route.namespace
    as_written = {_ref_key(r, ns): dict(r) for r in spec_refs}
    others = [dict(p) for p in old if p.get("controllerName") != controller]
    previous = {
        _ref_key(p.get("parentRef") or {}, ns): p
        for p in old
        if p.get("controllerName") == controller
    }
    ours: list[Raw] = []
    for ps in status.parents:
        ref = parent_ref_to_wire(ps.parent_ref)
        ref = as_written.get(_ref_key(ref, ns), ref)
        prev = previous.get(_ref_key(ref, ns)) or {}
        prev_conds = {c.get("type"): c for c in prev.get("conditions") or ()}
        conds: list[Raw] = []
        for c in ps.conditions:
            p = prev_conds.get(c.type) or {}
            same = p.get("status") == c.status and p.get("reason") == c.reason
            conds.append(
                {
                    "type": c.type,
                    "status": c.status,
                    "reason": c.reason,
                    "message": c.message,
                    "observedGeneration": c.observed_generation,
                    "lastTransitionTime": p.get("lastTransitionTime", now) if same else now,
                }
            )
        ours.append({"parentRef": ref, "controllerName": ps.controller_name, "conditions": conds})
    return others + ours
