"""Upgrade requests (WebSocket, ``Connection: upgrade``): routed like any other, then spliced.

```
Handler ─ req.upgrade ─► UpgradeCall.run()
   fault delay ─ _prepare (decision, backend, request filters, as `Call`) ─ balancer endpoint
   (none ready: 503) ─► UpstreamPool.upgrade(...): one try, never retried
      101 Switching Protocols ─► ResponseWriter.tunnel: bytes both ways until either side
                                 closes; counted as one request answered 101
      any other answer        ─► read whole, response filters, written like a plain response
      UpstreamError           ─► the answer for the error (as `Call`)
```

An upgrade is a `Call` (same decision, filters, telemetry and answers) that takes its one
try as a coroutine: a tunnel lives as long as the connection, so it does not fit the
callback flow of plain requests. Not here: HTTP/2 extended CONNECT, h2c upgrades (the
transport answers those itself), message-level WebSocket handling.
"""

from __future__ import annotations

import asyncio
import logging

from turnout.proxy import faults
from turnout.proxy.call import Call, attempt_error
from turnout.proxy.errors import UpstreamError
from turnout.proxy.filters import forward_headers
from turnout.proxy.retries import try_timeout

log = logging.getLogger(__name__)


class UpgradeCall(Call):
    """One upgrade request; `run` is its whole life."""

    __slots__ = ()

    async def run(self) -> None:
        """An upgrade request: routed like any other, then spliced (never retried)."""
        fault = self.decision.fault
        if fault is not None and (delay := faults.delay_s(fault, self.h.draw)):
            await asyncio.sleep(delay)
        self.body = b""
        if not self._prepare():
            return
        target = self._target()
        if target is None:
            self._answer(self._unavailable())
            return
        slot, addr = target
        balancer = self.balancer
        h, ex = self.h, self.ex
        identity = self._endpoint_tls(slot, addr)
        if identity is False:
            return
        upgrade = self.req.upgrade
        assert upgrade is not None
        t0 = h.clock()
        failed = True
        try:
            resp, tunnel = await h.pool.upgrade(
                addr,
                method=self.method,
                target=self.target,
                headers=forward_headers(self.req.headers, self.req.host),
                upgrade=upgrade,
                timeout_ms=try_timeout(self.decision.per_try_timeout_ms, self.deadline, t0),
                identity=identity,
            )
            failed = False
        except UpstreamError as exc:
            ex.attempt(None, error=attempt_error(exc))
            self._answer_error(exc)
            return
        finally:
            if balancer is not None and slot is not None:
                balancer.release(slot, (h.clock() - t0) * 1000, failed=failed)
        ex.attempt(resp.status)
        ex.response_head(resp.status)
        if tunnel is None:
            body = await resp.read()
            await self.writer.respond(
                resp.status, self._response_headers(resp.status, resp.headers), body
            )
            ex.finish(resp.status, bytes_sent=len(body))
            return
        try:
            await self.writer.tunnel(tunnel)
        finally:
            ex.finish(101)
