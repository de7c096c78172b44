"""A proxyless grpcio xDS server, run as a subprocess: `python -m
tests.engine.server.grpc_xds_server IP:PORT` with `GRPC_XDS_BOOTSTRAP_CONFIG` set.

`grpc.server(..., xds=True)` (only the thread-pool server has it) with
`grpc.xds_server_credentials(insecure)`: the Listener it asks for (mTLS, RBAC) comes from our
ADS server; plaintext is only the fallback when that Listener carries no TLS context.
`/test.Echo/Who` answers what the server saw of its peer as JSON:

```
{"peer": "ipv4:127.0.0.1:…", "identities": ["spiffe://…", "web.shop…"], "auth": {"x509_subject_alternative_name": [...], ...}}
```

It prints `serving IP:PORT` once started and runs until stdin closes.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc


def who(request: bytes, context: Any) -> bytes:
    auth = {
        key: sorted(v.decode(errors="replace") for v in values)
        for key, values in context.auth_context().items()
        if not key.startswith("x509_pem")  # the PEMs would make each answer kilobytes long
    }
    identities = [i.decode() for i in context.peer_identities() or ()]
    return json.dumps({"peer": context.peer(), "identities": identities, "auth": auth}).encode()


def main() -> None:
    address = sys.argv[1]
    server = grpc.server(ThreadPoolExecutor(max_workers=8), xds=True)
    handler = grpc.method_handlers_generic_handler(
        "test.Echo", {"Who": grpc.unary_unary_rpc_method_handler(who)}
    )
    server.add_generic_rpc_handlers((handler,))
    creds = grpc.xds_server_credentials(grpc.insecure_server_credentials())
    server.add_secure_port(address, creds)
    server.start()
    print(f"serving {address}", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    server.stop(grace=None).wait()


if __name__ == "__main__":
    main()
