"""The per-request path: a `Decision` from the runtime table, applied to one HTTP request.

```
IncomingRequest ─ listener (Host -> Service) ─ decide() ─┬─ DirectResponse / Redirect ─► answer
                                                         └─ Forward
   fault: delay, abort ── weighted backend (invalid share: its status) ── balancer endpoint
   (none ready: 503) ── try: per-try timeout inside the request deadline (504)
        └─ retriable status / connect error + replayable body + budget ─► backoff, try again
   response filters ─► stream to the client; mirrors in the background; metrics; tap
```

`ProxyState` (table, balancers, budgets) is replaced as a whole on every table update; a
request reads it once, so it finishes on the table it started with. Its balancers and budgets
are a per-table snapshot of the clusters (the `Balancer`/`Budget` objects themselves are
shared across tables), so a retry or a mirror of a request whose cluster a later table
dropped still finds the endpoints of its own table. Everything that can be built per table
update is (decisions, matchers, cumulative weights); per request this module allocates the
request info, the upstream header list and the few objects of the exchange.

Inbound (in front of the local app) forwards every request to the app: routing is the
client side's job, as in Linkerd; the inbound side counts what the app answers (the metrics
Flagger reads) and is where authorization will plug in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

from turnout.proxy.actions import Backend, Decision, DirectResponse, Forward, Redirect
from turnout.proxy.balancer import Balancer
from turnout.proxy.budget import Budget
from turnout.proxy.errors import UpstreamConnectError, UpstreamError, UpstreamTimeout
from turnout.proxy.filters import apply_request_filters, apply_response_filters, redirect_location
from turnout.proxy.hosts import listener_for_host
from turnout.proxy.metrics import REQUEST_TIMEOUT, RESPONSE_HEADERS_TIMEOUT
from turnout.proxy.request import RequestInfo
from turnout.proxy.table import RuntimeTable
from turnout.proxy.telemetry import Exchange, Telemetry
from turnout.proxy.transport.client import UpstreamPool
from turnout.proxy.transport.messages import (
    HOP_BY_HOP,
    IncomingRequest,
    RequestBody,
    ResponseWriter,
    UpstreamResponse,
)

log = logging.getLogger(__name__)

Direction = Literal["inbound", "outbound"]

MAX_RETRY_BODY_BYTES = 64 * 1024
"""Only requests whose body is buffered under this size are retried (Linkerd's cap)."""

SMALL_BODY_BYTES = 64 * 1024
"""Responses up to this size (with a Content-Length) are read whole and written in one go."""

MAX_MIRRORS_IN_FLIGHT = 64
"""Mirrored copies beyond this many at once are dropped: a mirror never slows the request."""

MIRROR_TIMEOUT_MS = 10_000
"""A mirrored copy gives up after this long."""

_REASONS = {404: b"no route", 503: b"no ready endpoint", 504: b"timeout", 502: b"bad gateway"}


T_co = TypeVar("T_co", covariant=True)


class ByCluster(Protocol[T_co]):
    """Per-cluster lookup: a `Balancers`/`Budgets`, or a mapping snapshot of one."""

    def get(self, cluster: str, /) -> T_co | None: ...


@dataclass(frozen=True, slots=True)
class ProxyState:
    """Everything a request reads at its start; replaced whole on each table update."""

    table: RuntimeTable
    balancers: ByCluster[Balancer]
    """The table's clusters only, fixed for this state (not the live `Balancers`)."""
    budgets: ByCluster[Budget]
    """As `balancers`."""
    version: str = ""


@dataclass(slots=True)
class Handler:
    """One listener's request path (outbound: routes; inbound: the local app)."""

    state: ProxyState
    pool: UpstreamPool
    telemetry: Telemetry
    direction: Direction = "outbound"
    namespace: str = "default"
    app: tuple[str, int] | None = None
    """Inbound only: where the local app listens."""
    rng: random.Random = field(default_factory=random.Random)
    clock: Callable[[], float] = time.monotonic
    _listeners: dict[str, str | None] = field(default_factory=dict)
    _mirrors: set[asyncio.Task[None]] = field(default_factory=set)

    def swap(self, state: ProxyState) -> None:
        """Atomic: requests already running keep the state they read."""
        self.state = state

    async def __call__(self, req: IncomingRequest, writer: ResponseWriter) -> None:
        start = self.clock()
        if self.direction == "inbound":
            await self._inbound(req, writer, start)
            return
        state = self.state
        listener = self._listener(req.host)
        info = RequestInfo(
            method=req.method,
            authority=req.host,
            path=req.path,
            query=req.query,
            headers=req.headers,
        )
        decision = None if listener is None else state.table.decide(info, listener=listener)
        ex = self.telemetry.exchange(
            direction="outbound", request=req, decision=decision, start=start
        )
        if decision is None:
            await self._answer(writer, ex, 404, b"unknown destination: " + req.host.encode())
            return
        await self._outbound(req, writer, info, decision, state, ex)

    # ----------------------------------------------------------------------- outbound

    async def _outbound(
        self,
        req: IncomingRequest,
        writer: ResponseWriter,
        info: RequestInfo,
        decision: Decision,
        state: ProxyState,
        ex: Exchange,
    ) -> None:
        fault = decision.fault
        if fault is not None:
            if fault.delay_per_million and self._draw(fault.delay_per_million):
                await asyncio.sleep(fault.delay_ms / 1000)
            if fault.abort_per_million and self._draw(fault.abort_per_million):
                await self._abort(writer, ex, decision)
                return
        action = decision.action
        if isinstance(action, DirectResponse):
            await self._answer(writer, ex, action.status, action.body.encode(), decision)
            return
        if isinstance(action, Redirect):
            location = redirect_location(decision, info, "http")
            headers = apply_response_filters(decision, None, action.status, ())
            ex.finish(action.status)
            await writer.respond(action.status, [("location", location), *headers], b"")
            return
        assert isinstance(action, Forward)
        backend = action.pick(self.rng.randrange(action.total))
        ex.backend(backend)
        if backend.invalid is not None:
            msg = f"{backend.invalid.reason}: {backend.invalid.message}".encode()
            await self._answer(writer, ex, backend.invalid.status, msg, decision, backend)
            return
        if (
            decision.request_headers
            or backend.request_headers
            or decision.host_rewrite is not None
            or backend.host_rewrite is not None
            or decision.path_rewrite is not None
        ):
            upstream = apply_request_filters(decision, info, backend)
            method, target = upstream.method, upstream.path_and_query
            fwd = forward_headers(upstream.headers, upstream.authority)
        else:  # no request filter: the request goes on as it came (the common case)
            method = req.method
            target = f"{req.path}?{req.query}" if req.query else req.path
            fwd = forward_headers(req.headers, req.host)
        body = await self._body(req)
        self._mirror(decision, state, req, target, fwd, body)
        budget = state.budgets.get(backend.cluster)
        if budget is not None:
            budget.deposit()
        await self._exchange(
            writer,
            ex,
            decision,
            backend,
            state,
            method=method,
            target=target,
            headers=fwd,
            body=body,
            stream=req.body,
        )

    async def _exchange(
        self,
        writer: ResponseWriter,
        ex: Exchange,
        decision: Decision,
        backend: Backend,
        state: ProxyState,
        *,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
        stream: RequestBody,
    ) -> None:
        """Tries and retries inside the request deadline; then the response. `body` is the
        buffered (replayable) body, None when it is too big: then `stream` carries it, once,
        and the request is never retried."""
        balancer = state.balancers.get(backend.cluster)
        budget = state.budgets.get(backend.cluster)
        retry = decision.retry
        deadline = (
            None
            if decision.request_timeout_ms is None
            else ex.start + decision.request_timeout_ms / 1000
        )
        attempt = 0
        while True:
            ep = balancer.pick() if balancer is not None else None
            if ep is None:
                await self._answer(writer, ex, 503, _REASONS[503], decision, backend)
                return
            timeout_ms = _try_timeout(decision.per_try_timeout_ms, deadline, self.clock())
            if timeout_ms is not None and timeout_ms <= 0:
                await self._answer(writer, ex, 504, _REASONS[504], decision, backend, timeout=True)
                return
            assert balancer is not None
            ex.endpoint((ep.address, ep.port))
            balancer.start(ep)
            t0 = self.clock()
            resp: UpstreamResponse | None = None
            error: UpstreamError | None = None
            try:
                resp = await self.pool.request(
                    (ep.address, ep.port),
                    method=method,
                    target=target,
                    headers=headers,
                    body=body if body is not None else stream.chunks(),
                    timeout_ms=timeout_ms,
                )
            except UpstreamError as exc:
                error = exc
            finally:
                # A request the client abandoned (cancelled) says nothing about the
                # endpoint: counting it as a failure let a load generator that closes its
                # connections back every endpoint off and turn the next requests into 503s.
                failed = error is not None
                balancer.finish(ep, (self.clock() - t0) * 1000, failed=failed)
            status = resp.status if resp is not None else None
            ex.attempt(status, error=_attempt_error(error))
            retriable = retry is not None and (
                (status is not None and status in retry.codes)
                or isinstance(error, UpstreamConnectError)
                or (isinstance(error, UpstreamTimeout) and decision.per_try_timeout_ms is not None)
            )
            if retriable and retry is not None:
                if body is None:
                    ex.retry_skipped()  # not buffered: the body cannot be sent again
                elif attempt >= retry.attempts:
                    ex.retry_limit_exceeded()
                elif budget is None or budget.try_withdraw():
                    if resp is not None:
                        resp.release()
                    attempt += 1
                    ex.retry(status=status, error=error)
                    backoff = _backoff_ms(
                        retry.backoff_base_ms, retry.backoff_max_ms, attempt, self.rng
                    )
                    if deadline is not None and self.clock() + backoff / 1000 >= deadline:
                        await self._answer(
                            writer, ex, 504, _REASONS[504], decision, backend, timeout=True
                        )
                        return
                    await asyncio.sleep(backoff / 1000)
                    continue
                else:
                    ex.retry_skipped()
            elif attempt > 0 and resp is not None:
                ex.retry_success()
            if resp is None:
                if isinstance(error, UpstreamTimeout):
                    await self._answer(
                        writer, ex, 504, _REASONS[504], decision, backend, timeout=True
                    )
                else:
                    code = 503 if isinstance(error, UpstreamConnectError) else 502
                    await self._answer(
                        writer, ex, code, _REASONS[502], decision, backend, error=error
                    )
                return
            await self._relay(writer, ex, decision, backend, resp, deadline)
            return

    async def _relay(
        self,
        writer: ResponseWriter,
        ex: Exchange,
        decision: Decision,
        backend: Backend | None,
        resp: UpstreamResponse,
        deadline: float | None,
    ) -> None:
        headers = [(n, v) for n, v in resp.headers if n.lower() not in HOP_BY_HOP]
        if decision.response_headers or (backend is not None and backend.response_headers):
            headers = list(apply_response_filters(decision, backend, resp.status, headers))
        ex.response_head(resp.status)
        sent = 0
        length = resp.content_length
        failure: TimeoutError | UpstreamError | None = None
        try:
            async with _deadline(deadline, self.clock):
                if length is not None and length <= SMALL_BODY_BYTES:
                    body = await resp.read()
                    sent = len(body)
                    await writer.respond(resp.status, headers, body)
                else:
                    await writer.start(resp.status, headers, content_length=length)
                    async for chunk in resp.chunks():
                        sent += len(chunk)
                        await writer.write(chunk)
                    await writer.end()
        except (TimeoutError, UpstreamError) as exc:
            if writer.started:
                # Half a response cannot be taken back: count it, and let the listener
                # close the client connection (it does that for an UpstreamError).
                timeout = isinstance(exc, TimeoutError)
                kind = REQUEST_TIMEOUT if timeout else type(exc).__name__
                ex.finish(resp.status, error=kind, bytes_sent=sent)
                if timeout:
                    raise UpstreamTimeout(
                        ex.target, "request deadline expired mid-response"
                    ) from exc
                raise
            failure = exc
        finally:
            resp.release()
        if failure is None:
            ex.finish(resp.status, bytes_sent=sent)
        elif isinstance(failure, TimeoutError):
            await self._answer(writer, ex, 504, _REASONS[504], decision, backend, timeout=True)
        else:
            # The upstream broke before the client got anything (a body read whole first).
            await self._answer(writer, ex, 502, _REASONS[502], decision, backend, error=failure)

    # ----------------------------------------------------------------------- inbound

    async def _inbound(self, req: IncomingRequest, writer: ResponseWriter, start: float) -> None:
        assert self.app is not None
        ex = self.telemetry.exchange(
            direction="inbound", request=req, decision=None, start=start, target=self.app
        )
        headers = forward_headers(req.headers, req.host)
        body = await self._body(req)
        try:
            resp = await self.pool.request(
                self.app,
                method=req.method,
                target=req.target,
                headers=headers,
                body=body if body is not None else req.body.chunks(),
                timeout_ms=None,
            )
        except UpstreamError as exc:
            code = 504 if isinstance(exc, UpstreamTimeout) else 502
            await self._answer(writer, ex, code, _REASONS[code], error=exc)
            return
        await self._relay(writer, ex, _NO_DECISION, None, resp, None)

    # ----------------------------------------------------------------------- helpers

    def _listener(self, host: str) -> str | None:
        cached = self._listeners.get(host, "")
        if cached != "":
            return cached
        if len(self._listeners) > 4096:
            self._listeners.clear()
        got = listener_for_host(host, namespace=self.namespace) if host else None
        self._listeners[host] = got
        return got

    def _draw(self, per_million: int) -> bool:
        return per_million >= 1_000_000 or self.rng.random() * 1_000_000 < per_million

    async def _body(self, req: IncomingRequest) -> bytes | None:
        """The whole body when it fits the retry cap (replayable), else None (streamed)."""
        return await req.body.read(MAX_RETRY_BODY_BYTES)

    async def _abort(self, writer: ResponseWriter, ex: Exchange, decision: Decision) -> None:
        fault = decision.fault
        assert fault is not None
        if fault.abort_grpc_status is not None:
            headers = [
                ("content-type", "application/grpc"),
                ("grpc-status", str(fault.abort_grpc_status)),
                ("grpc-message", "fault injected"),
            ]
            ex.finish(200, grpc_status=fault.abort_grpc_status)
            await writer.respond(200, headers, b"")
            return
        status = fault.abort_http_status or 500
        await self._answer(writer, ex, status, b"fault injected", decision)

    async def _answer(
        self,
        writer: ResponseWriter,
        ex: Exchange,
        status: int,
        body: bytes,
        decision: Decision | None = None,
        backend: Backend | None = None,
        *,
        timeout: bool = False,
        error: UpstreamError | None = None,
    ) -> None:
        headers: list[tuple[str, str]] = [("content-type", "text/plain")]
        if decision is not None:
            headers = list(apply_response_filters(decision, backend, status, headers))
        kind = REQUEST_TIMEOUT if timeout else (type(error).__name__ if error else "")
        ex.finish(status, error=kind)
        if not writer.started:
            await writer.respond(status, headers, body)

    def _mirror(
        self,
        decision: Decision,
        state: ProxyState,
        req: IncomingRequest,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
    ) -> None:
        """Fire and forget: never awaited, bounded, failures only logged."""
        if not decision.mirrors or body is None:
            return
        for mirror in decision.mirrors:
            if not self._draw(mirror.per_million) or len(self._mirrors) >= MAX_MIRRORS_IN_FLIGHT:
                continue
            balancer = state.balancers.get(mirror.cluster)
            ep = balancer.pick() if balancer is not None else None
            if ep is None:
                continue
            task = asyncio.get_running_loop().create_task(
                self._send_mirror((ep.address, ep.port), req.method, target, headers, body),
                name=f"mirror {mirror.cluster}",
            )
            self._mirrors.add(task)
            task.add_done_callback(self._mirrors.discard)

    async def _send_mirror(
        self,
        ep: tuple[str, int],
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> None:
        try:
            resp = await self.pool.request(
                ep,
                method=method,
                target=target,
                headers=headers,
                body=body,
                timeout_ms=MIRROR_TIMEOUT_MS,
            )
            await resp.read()
        except UpstreamError as exc:
            log.debug("mirror failed endpoint=%s:%d error=%s", ep[0], ep[1], exc)

    async def aclose(self) -> None:
        for task in list(self._mirrors):
            task.cancel()
        for task in list(self._mirrors):
            with contextlib.suppress(asyncio.CancelledError):
                await task


_NO_DECISION = Decision(route=None, action=DirectResponse(status=200))


def forward_headers(
    headers: list[tuple[str, str]] | tuple[tuple[str, str], ...], host: str
) -> list[tuple[str, str]]:
    """End-to-end headers with Host set to `host` (hop-by-hop and framing left out)."""
    out = [(n, v) for n, v in headers if n.lower() not in HOP_BY_HOP and n.lower() != "host"]
    out.insert(0, ("host", host))
    return out


def _attempt_error(error: UpstreamError | None) -> str:
    """The `error` label of one try's outcome ("" when a response arrived)."""
    if error is None:
        return ""
    return RESPONSE_HEADERS_TIMEOUT if isinstance(error, UpstreamTimeout) else type(error).__name__


def _try_timeout(per_try_ms: int | None, deadline: float | None, now: float) -> int | None:
    left = None if deadline is None else int((deadline - now) * 1000)
    if per_try_ms is None:
        return left
    return per_try_ms if left is None else min(per_try_ms, left)


def _backoff_ms(base: int, cap: int, attempt: int, rng: random.Random) -> float:
    """Exponential with full jitter above the base: never earlier than `base` (GEP-1731)."""
    ceiling = min(cap, base * (2 ** (attempt - 1)))
    return float(base + rng.random() * max(0, ceiling - base))


def _deadline(deadline: float | None, clock: Callable[[], float]) -> asyncio.Timeout:
    """The rest of the request deadline as an `asyncio.timeout` (None: no limit, which
    `asyncio.timeout(None)` makes free: no timer is scheduled)."""
    if deadline is None:
        return asyncio.timeout(None)
    return asyncio.timeout(max(0.0, deadline - clock()))
