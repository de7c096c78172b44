"""`FanIn.refresh`: a listed proxy whose tap stream ended is tapped again on the next refresh
(real aiohttp client, a real server that answers one event and closes)."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from tests.proxy.e2e.harness import bounded
from turnout.engine.server.ads_status import StreamStatus
from turnout.engine.server.tap_fanin import FanIn


@bounded(10)
async def test_a_listed_proxy_whose_stream_ended_is_tapped_again() -> None:
    opened = 0

    async def tap(request: web.Request) -> web.Response:
        nonlocal opened
        opened += 1
        return web.Response(text='{"type":"req","direction":"inbound"}\n')  # then it closes

    app = web.Application()
    app.router.add_get("/tap", tap)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    admin = f"127.0.0.1:{runner.addresses[0][1]}"
    stream = StreamStatus(
        peer=admin, node_id="web-1", namespace="shop", acked={}, subscriptions={}, nacks=(),
        workload="deployment/web", pod="web-1", admin=admin,
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:
            fan = FanIn(session, "format=json", None)
            fan.refresh({admin: stream})
            assert (await fan.queue.get()).startswith(b'{"type":"req"')
            first = fan.pumps[admin]
            await first  # the stream ended
            fan.refresh({admin: stream})  # still listed: opened again
            assert fan.pumps[admin] is not first
            assert (await fan.queue.get()).startswith(b'{"type":"req"')
            assert opened == 2
            await fan.close()
    finally:
        await runner.cleanup()
