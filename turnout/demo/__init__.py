"""The live demo: a small emojivoto (in the spirit of Linkerd's) on our mesh, all on 127.0.0.1.

```
vote-bot ──HTTP──> mesh proxy (outbound, ns loadgen) ──HTTPRoute web 90/10──┐
                                                                             v
               mesh proxy (inbound) ─> web v1 (aiohttp)   mesh proxy (inbound) ─> web v2
                                          │ proxyless gRPC (xds:///...)          │
                                          v                                      v
                         emoji (grpcio)     voting v1 / voting v2 (grpcio; GRPCRoute 80/20,
                                            VoteDoughnut always fails, delayed by a fault)
mesh serve --dir <tmp copy of examples/emojivoto> ── ADS ──> every proxy and both web versions
```

Modules: `catalog` (the emoji and the gRPC method names), `services` (the emoji and voting
gRPC servers), `web` (the front end, with client-side route metrics of its proxyless calls),
`votebot` (the traffic generator) and `orchestrate` (start everything as subprocesses, wait
until ready, stop by pid). Printing is the CLI's (`mesh demo`).
"""

from __future__ import annotations
