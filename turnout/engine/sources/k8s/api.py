"""The boundary to the API server: settings, errors, the kubernetes client, retried requests.

```
KubernetesApi.request(method, path) ──thread pool──> _Http.request ──kubernetes ApiClient──> API
   │  transient (0/429/5xx, no answer in time): backoff "attempt #n/N", Retry-After as a floor
   v
 Raw JSON | KubernetesApiError(status, retry_after)       (urllib3/kubernetes errors mapped once,
KubernetesApi.open_watch(path, query) ──> WatchStream.next_line (bounded by the inactivity timeout)
```

The kubernetes client is synchronous (urllib3). Every call runs in this client's own thread
pool, never on the loop; a dedicated pool because each watch holds a thread for as long as
it streams and would starve `asyncio.to_thread`. Only this module catches kubernetes and
urllib3 errors: `_mapped_errors` turns them into `KubernetesApiError` (a `SourceError`).
urllib3's own status retries (which sleep on `Retry-After` inside the client) are switched
off on the client's pool, so every retry is ours: logged, jittered and bounded.

Deliberately not here: what is watched (`kinds.py`), the list+watch loop (`watching.py`),
status write-back (`status.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import json
import logging
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import urllib3

# Recent kubernetes releases ship py.typed, older ones do not: accept both.
from kubernetes import client as k8s_client  # type: ignore[import-untyped, unused-ignore]
from kubernetes import config as k8s_config

from turnout.engine.errors import SourceError
from turnout.engine.sources.k8s.kinds import Raw

log = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

TEXT_ERROR_MAX = 256
"""Foreign error bodies are truncated to this many characters in messages and logs."""


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
    """Tries of one request (or watch reopen) on transient failures; then the kind relists,
    still backing off (it never stops probing)."""
    backoff_base_s: float = 0.5
    backoff_max_s: float = 2.0
    """Cap of every backoff wait (before jitter; a server's `Retry-After` may ask for more):
    a recovering API server is probed at least this often, so a change made right after
    it is back arrives within seconds (Flagger's deadline is 5 s), never after a blind
    fixed sleep."""
    jitter: float = 0.2
    """Each wait is multiplied by uniform(1, 1 + jitter): never shorter than asked."""
    retry_after_max_s: float = 300.0
    """Cap on a server's `Retry-After`."""
    denied_retry_s: float = 30.0
    """Wait before listing again a kind that got 401/403 (or another non-transient error):
    a permission granted later is picked up, the audit log is not flooded."""
    missing_kind_retry_s: float = 60.0
    """Wait between LISTs of a kind whose CRD is not installed (404), a fallback only: the
    CustomResourceDefinition watch wakes the kind as soon as its CRD appears."""
    page_size: int = 500
    """LIST `limit`; pages are followed with `continue`."""
    status_attempts: int = 5
    """GET+PUT rounds of one route status on 409 Conflict."""
    status_concurrency: int = 8
    """Route statuses written at the same time."""
    status_resync_s: float = 60.0
    """Every desired route and Gateway status is compared with the watched copy this often
    and written where they differ; a failed write is retried sooner, with the backoff."""


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


class WatchExpired(Exception):
    """410 Gone: the resourceVersion is older than the server's history; relist.

    A signal inside the Kubernetes source, outside the `MeshError` tree on purpose: the watch
    loop catches every one and relists; none reaches a caller."""


@contextlib.contextmanager
def _mapped_errors(what: str) -> Iterator[None]:
    """The boundary: kubernetes/urllib3/socket errors become `KubernetesApiError`."""
    try:
        yield
    except k8s_client.ApiException as exc:
        raise _api_error(what, int(exc.status or 0), exc.body, exc.headers) from exc
    except (urllib3.exceptions.HTTPError, OSError, json.JSONDecodeError) as exc:
        raise KubernetesApiError(f"{what}: {type(exc).__name__}: {exc}", status=0) from exc
    except k8s_config.ConfigException as exc:
        # Credentials refreshed per request (an exec plugin, the in-cluster token file)
        # that failed this time: retried like no answer.
        raise KubernetesApiError(f"{what}: credentials: {exc}", status=0) from exc


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


def _tune_pool(api: Any, *, pool_size: int) -> None:
    """Make the client's urllib3 pool fit a long-running source.

    urllib3 by default retries a 429/503 that has `Retry-After` by sleeping in the calling
    thread, and re-sends after read errors; our backoff owns retries (logged, jittered,
    bounded), so only connection establishment is retried below us. One pooled connection
    per watch plus the status writers, or urllib3 opens and discards extra ones."""
    kw = api.rest_client.pool_manager.connection_pool_kw
    kw["retries"] = urllib3.Retry(
        total=2, connect=2, read=0, redirect=0, status=0, respect_retry_after_header=False
    )
    kw["maxsize"] = max(int(kw.get("maxsize") or 1), pool_size)


class WatchStream:
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


def raw_call(
    api: Any,
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    body: Any,
    *,
    timeout: float | tuple[float, float],
    accept: str = "application/json",
) -> Any:
    """One request through a kubernetes `ApiClient` (its auth, TLS and host), JSON in and
    out; blocks; the urllib3 response, unread errors raised as the client raises them."""
    headers = {"Accept": accept}
    if body is not None:
        headers["Content-Type"] = "application/json"
    m, url, hdrs, payload, _ = api.param_serialize(
        method=method,
        resource_path=path,
        query_params=list(query),
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    return api.call_api(m, url, header_params=hdrs, body=payload, _request_timeout=timeout).response


class _Http:
    """The raw HTTP of the kubernetes `ApiClient` (auth, TLS, host); every method blocks."""

    def __init__(self, api: Any, settings: KubernetesSettings, *, pool_size: int) -> None:
        _tune_pool(api, pool_size=pool_size)
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
        timeout = (self._settings.connect_timeout_s, read)
        return raw_call(self._api, method, path, query, body, timeout=timeout)

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

    def watch(self, path: str, query: Sequence[tuple[str, str]]) -> WatchStream:
        what = f"WATCH {path}"
        # The read timeout backs up the loop's inactivity timeout so the thread ends too.
        read = self._settings.inactivity_timeout_s + 5
        with _mapped_errors(what):
            resp = self._send("GET", path, query, None, read)
            if resp.status != 200:
                data = resp.data
                resp.release_conn()
                raise _api_error(what, resp.status, data, resp.headers)
        return WatchStream(resp, what)


class KubernetesApi:
    """Requests and watches on their own thread pool, retried on transient failures.

    `pool_size` threads: one per watch held open plus the status writers. `sleep` and `rng`
    are the seams for backoff waits (tests record them and scale them down)."""

    def __init__(
        self,
        api_client: Any,
        *,
        settings: KubernetesSettings,
        pool_size: int,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._http = _Http(api_client, settings, pool_size=pool_size)
        self._settings = settings
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._pool = ThreadPoolExecutor(pool_size, thread_name_prefix="turnout-k8s")

    def close(self) -> None:
        """Release the threads (nothing can be sent after this)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        s = self._settings
        base = min(s.backoff_max_s, s.backoff_base_s * 2.0 ** (attempt - 1))
        if retry_after is not None:
            base = max(base, min(retry_after, s.retry_after_max_s))
        return base * self._rng.uniform(1.0, 1.0 + s.jitter)

    async def backoff(self, exc: KubernetesApiError, attempt: int) -> None:
        delay = self.delay(attempt, exc.retry_after)
        log.warning(
            "request failed %s; retrying attempt #%d/%d in %.2fs",
            exc,
            attempt + 1,
            self._settings.attempts,
            delay,
        )
        await self._sleep(delay)

    async def request(
        self, method: str, path: str, query: Sequence[tuple[str, str]] = (), body: Raw | None = None
    ) -> Raw:
        """One request, retried on transient failures (see `KubernetesSettings.attempts`)."""
        s = self._settings
        for attempt in range(1, s.attempts + 1):
            try:
                async with asyncio.timeout(s.request_timeout_s + s.connect_timeout_s + 1):
                    return await self.in_thread(self._http.request, method, path, query, body)
            except TimeoutError:
                exc = KubernetesApiError(f"{method} {path}: no answer in time", status=0)
                if attempt == s.attempts:
                    raise exc from None
            except KubernetesApiError as err:
                if not err.transient or attempt == s.attempts:
                    raise
                exc = err
            await self.backoff(exc, attempt)
        raise AssertionError("unreachable")

    async def open_watch(self, path: str, query: Sequence[tuple[str, str]]) -> WatchStream:
        """A watch response, open (its status checked); read it with `next_line`."""
        s = self._settings
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._pool, self._http.watch, path, query)
        try:
            async with asyncio.timeout(s.request_timeout_s + s.connect_timeout_s + 1):
                return await asyncio.shield(fut)
        except TimeoutError:
            fut.add_done_callback(_abort_opened)
            raise KubernetesApiError(f"WATCH {path}: no answer in time", status=0) from None
        except asyncio.CancelledError:
            fut.add_done_callback(_abort_opened)  # the stream may still open: close it then
            raise

    async def next_line(self, stream: WatchStream) -> bytes | None:
        """The next line; None at the stream's end; no line in the inactivity timeout raises."""
        try:
            async with asyncio.timeout(self._settings.inactivity_timeout_s):
                return await self.in_thread(stream.next_line)
        except TimeoutError:
            secs = self._settings.inactivity_timeout_s
            raise KubernetesApiError(f"watch inactive for {secs:.0f}s", status=0) from None


def _abort_opened(fut: asyncio.Future[WatchStream]) -> None:
    if not fut.cancelled() and fut.exception() is None:
        fut.result().abort()
