"""The emoji and voting gRPC services (grpcio, generic handlers, JSON messages).

```
python -m turnout.demo.services emoji  --port N
python -m turnout.demo.services voting --port N --version v1
```
``/emojivoto.v1.EmojiService/ListAll`` answers every emoji, ``FindByShortcode`` one.
``/emojivoto.v1.VotingService/Vote<Name>`` counts a vote (``VoteDoughnut`` always fails with
UNKNOWN), ``Results`` answers the tally of this instance, ``version`` included.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
import grpc.aio

from turnout.demo import catalog
from turnout.demo.lifecycle import setup_logging, stop_event

log = logging.getLogger(__name__)

Context = Any
"""``grpc.aio.ServicerContext`` (grpc has no type stubs here)."""
Method = Callable[[bytes, Context], Awaitable[bytes]]


def emoji_handlers() -> dict[str, Method]:
    everything = catalog.encode(
        [{"shortcode": e.shortcode, "unicode": e.unicode} for e in catalog.EMOJI]
    )

    async def list_all(request: bytes, context: Context) -> bytes:
        return everything

    async def find(request: bytes, context: Context) -> bytes:
        data = catalog.decode(request)
        code = data.get("shortcode", "") if isinstance(data, dict) else ""
        e = catalog.BY_SHORTCODE.get(str(code))
        if e is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no emoji {code!r}")
        assert e is not None
        return catalog.encode({"shortcode": e.shortcode, "unicode": e.unicode})

    return {"ListAll": list_all, "FindByShortcode": find}


def voting_handlers(version: str) -> dict[str, Method]:
    tally: Counter[str] = Counter()

    def vote(shortcode: str) -> Method:
        async def handler(request: bytes, context: Context) -> bytes:
            if shortcode == catalog.FAILING_VOTE:
                await context.abort(grpc.StatusCode.UNKNOWN, f"ERROR: {shortcode} is sold out")
            tally[shortcode] += 1
            return catalog.encode({})

        return handler

    async def results(request: bytes, context: Context) -> bytes:
        return catalog.encode({"version": version, "votes": dict(tally.most_common())})

    methods: dict[str, Method] = {
        catalog.vote_method(e.shortcode): vote(e.shortcode) for e in catalog.EMOJI
    }
    methods["Results"] = results
    return methods


async def serve(service: str, methods: dict[str, Method], *, host: str, port: int) -> None:
    handlers: dict[str, Any] = {
        name: grpc.unary_unary_rpc_method_handler(fn) for name, fn in methods.items()
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    log.info("serving %s on %s:%d", service, host, bound)
    stop = stop_event()
    try:
        await stop.wait()
    finally:
        await server.stop(grace=0.5)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m turnout.demo.services")
    p.add_argument("service", choices=("emoji", "voting"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--version", default="v1")
    args = p.parse_args(argv)
    setup_logging(f"{args.service}-{args.version}")
    if args.service == "emoji":
        asyncio.run(serve(catalog.EMOJI_SERVICE, emoji_handlers(), host=args.host, port=args.port))
    else:
        methods = voting_handlers(args.version)
        asyncio.run(serve(catalog.VOTING_SERVICE, methods, host=args.host, port=args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
