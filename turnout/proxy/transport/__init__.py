"""The proxy's HTTP transport: the listener (`serve_http`) and the upstream connection
pool (`UpstreamPool`), both `asyncio.Protocol`s over httptools, plus the messages they hand
to the request handler (docs/proxy.md is the contract).

```
client ─► server.serve_http ─► HttpServerProtocol (server: parsing; downstream: exchanges
          in order, timers) ─► IncomingRequest + ExchangeWriter (writer) ─► handler (not here)
handler ─► heads.encode_*_head ─► client.UpstreamPool.send / request / upgrade
          ─► UpstreamConnection (upstream) ─► ResponseReceiver / UpstreamResponse /
             UpgradedConnection ─► writer.tunnel()
```

The modules import each other in one order (tests/test_layering.py holds it): `streams`
(body buffers, write flow), `batch`, `messages` (the values and the `Protocol` seams),
`heads` (head bytes); then `writer` -> `downstream` -> `server` on one side and `pooled`
-> `upstream` -> `upgraded` -> `client` on the other, neither side importing the other. Writes are held until the end
of the loop's round and sent together (`batch.WriteBatch`). HTTP/2 from clients
(docs/http2.md) sits above the server side: `server` hands a connection opening with the
preface to `h2_server.take_over` (`h2_request`, `h2_stream` -> `h2_server`), whose streams
reach the same handler as HTTP/1 requests.

Mesh TLS (docs/mtls.md): `detect.serve_detecting` peeks each inbound connection and serves
it over TLS or plaintext; the pool opens TLS to an endpoint sent with an expected identity.
Nothing here routes, balances, retries or counts metrics: `ConnectionHooks` hand the numbers
to whoever does. No certificate handling beyond loading contexts.
"""

from __future__ import annotations

import logging

from turnout.proxy.transport.client import UpstreamPool
from turnout.proxy.transport.messages import (
    HOP_BY_HOP,
    Accept,
    ConnectionHooks,
    ConnectionInfo,
    Handler,
    Headers,
    IncomingRequest,
    Limits,
    RequestBody,
    ResponseWriter,
    TunnelEnd,
    UpstreamResponse,
    UpstreamTunnel,
)
from turnout.proxy.transport.server import serve_http
from turnout.proxy.transport.upgraded import UpgradedConnection

log = logging.getLogger(__name__)

__all__ = [
    "HOP_BY_HOP",
    "Accept",
    "ConnectionHooks",
    "ConnectionInfo",
    "Handler",
    "Headers",
    "IncomingRequest",
    "Limits",
    "RequestBody",
    "ResponseWriter",
    "TunnelEnd",
    "UpgradedConnection",
    "UpstreamPool",
    "UpstreamResponse",
    "UpstreamTunnel",
    "serve_http",
]
