"""JWT authentication for Python gRPC servers (`grpc.aio`), the proxyless side of `jwt_authn`.

```
server = grpc.aio.server(interceptors=[JwtInterceptor(authenticator, require=True)])
call ─ metadata `authorization: Bearer <t>` (or the rules' fromHeaders) ─ Authenticator
   no token ─ require: UNAUTHENTICATED (16); else the handler runs, `principal()` is None
   rejected (401) ─ UNAUTHENTICATED (16), details = the reason ("Jwt is expired", ...)
   rejected (403: audience with istio_statuses) ─ PERMISSION_DENIED (7)
   valid ─ the handler runs; `principal()` / `claims()` give the token's, for this call
```

The statuses follow the HTTP-to-gRPC mapping (401 -> 16, 403 -> 7) that a client going
through a proxy sees, so a client cannot tell a proxyless server from a proxied one. The
`Authenticator` (and its JWKS fetching) runs on the server's event loop; start it there
(`authenticator.start()`) and close it on shutdown. `SyncJwtInterceptor` is the same for
synchronous servers (`grpc.server(..., xds=True)`): it runs its authenticator on a thread of
its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import inspect
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

import grpc

from turnout.proxy.jwt_authn import Authenticated, Authenticator, JwtRule, Rejected

_PRINCIPAL: contextvars.ContextVar[Authenticated | None] = contextvars.ContextVar(
    "turnout_jwt_principal", default=None
)


def principal() -> str | None:
    """The calling token's ``<iss>/<sub>`` inside a handler (None: no token)."""
    found = _PRINCIPAL.get()
    return None if found is None else found.principal


def claims() -> Mapping[str, Any]:
    """The calling token's claims inside a handler (empty: no token)."""
    found = _PRINCIPAL.get()
    return {} if found is None else found.claims


class JwtInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Checks each call's token before its handler runs (see the module docstring)."""

    def __init__(self, authenticator: Authenticator, *, require: bool = False) -> None:
        self.authenticator = authenticator
        self.require = require

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        metadata = [(str(k), str(v)) for k, v in (details.invocation_metadata or ())]
        outcome = await self.authenticator.authenticate(metadata, "")
        handler = await continuation(details)
        if handler is None:
            return handler
        refusal = refusal_of(outcome, require=self.require)
        if refusal is not None:
            return _refusing(handler, *refusal)
        if isinstance(outcome, Authenticated):
            return _with_principal(handler, outcome)
        return handler


def refusal_of(outcome: object, *, require: bool) -> tuple[grpc.StatusCode, str] | None:
    """The status a call gets for an authentication outcome; None: it goes on. 401 -> 16
    (UNAUTHENTICATED), 403 -> 7 (PERMISSION_DENIED), no token -> 16 when one is required."""
    if isinstance(outcome, Rejected):
        code = (
            grpc.StatusCode.PERMISSION_DENIED
            if outcome.status == 403
            else grpc.StatusCode.UNAUTHENTICATED
        )
        return code, outcome.reason
    if not isinstance(outcome, Authenticated) and require:
        return grpc.StatusCode.UNAUTHENTICATED, "Jwt is missing"
    return None


def _refusing(
    handler: grpc.RpcMethodHandler, code: grpc.StatusCode, reason: str
) -> grpc.RpcMethodHandler:
    async def refuse(_request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, reason)

    return _same_kind(handler, refuse)


def _with_principal(handler: grpc.RpcMethodHandler, who: Authenticated) -> grpc.RpcMethodHandler:
    inner = (
        handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    )

    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        token = _PRINCIPAL.set(who)
        try:
            result = inner(request, context)
            return await result if inspect.isawaitable(result) else result
        finally:
            _PRINCIPAL.reset(token)

    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        token = _PRINCIPAL.set(who)
        try:
            result = inner(request, context)
            if hasattr(result, "__aiter__"):
                async for item in result:
                    yield item
            elif inspect.isawaitable(result):
                await result
        finally:
            _PRINCIPAL.reset(token)

    streaming = handler.unary_stream is not None or handler.stream_stream is not None
    return _same_kind(handler, stream if streaming else call)


def _same_kind(handler: grpc.RpcMethodHandler, fn: Callable[..., Any]) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind and serializers as `handler`, running `fn`."""
    args = (handler.request_deserializer, handler.response_serializer)
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(fn, *args)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(fn, *args)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(fn, *args)
    return grpc.stream_stream_rpc_method_handler(fn, *args)


class SyncJwtInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """`JwtInterceptor` for synchronous servers (`grpc.server(...)`, the only kind grpcio lets
    take ``xds=True``): the same checks and statuses. The `Authenticator` and its JWKS
    fetches live on a small event loop thread of their own; each call waits for its
    verdict there (at most `timeout_s`, then UNAVAILABLE). `close()` stops that thread."""

    def __init__(
        self,
        rules: Sequence[JwtRule],
        *,
        require: bool = False,
        istio_statuses: bool = False,
        timeout_s: float = 10.0,
        **keyset: Any,
    ) -> None:
        self.require = require
        self.timeout_s = timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="jwt", daemon=True)
        self._thread.start()

        async def make() -> Authenticator:
            auth = Authenticator.of(rules, istio_statuses=istio_statuses, **keyset)
            auth.start()
            return auth

        self.authenticator = asyncio.run_coroutine_threadsafe(make(), self._loop).result()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.authenticator.close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        metadata = [(str(k), str(v)) for k, v in (details.invocation_metadata or ())]
        handler = continuation(details)
        if handler is None:
            return handler
        future = asyncio.run_coroutine_threadsafe(
            self.authenticator.authenticate(metadata, ""), self._loop
        )
        try:
            outcome = future.result(self.timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return _sync_refusing(
                handler, grpc.StatusCode.UNAVAILABLE, "Jwt verification timed out"
            )
        refusal = refusal_of(outcome, require=self.require)
        if refusal is not None:
            return _sync_refusing(handler, *refusal)
        if isinstance(outcome, Authenticated):
            return _sync_with_principal(handler, outcome)
        return handler


def _sync_refusing(
    handler: grpc.RpcMethodHandler, code: grpc.StatusCode, reason: str
) -> grpc.RpcMethodHandler:
    def refuse(_request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, reason)

    return _same_kind(handler, refuse)


def _sync_with_principal(
    handler: grpc.RpcMethodHandler, who: Authenticated
) -> grpc.RpcMethodHandler:
    inner = (
        handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    )

    def call(request: Any, context: grpc.ServicerContext) -> Any:
        token = _PRINCIPAL.set(who)
        try:
            return inner(request, context)
        finally:
            _PRINCIPAL.reset(token)

    def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        token = _PRINCIPAL.set(who)
        try:
            yield from inner(request, context)
        finally:
            _PRINCIPAL.reset(token)

    streaming = handler.unary_stream is not None or handler.stream_stream is not None
    return _same_kind(handler, stream if streaming else call)
