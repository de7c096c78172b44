"""A proxyless grpcio client, run as a subprocess: `python -m tests.engine.server.grpc_client
xds:///NAME.NS.svc.cluster.local:PORT [--xds-creds]` with `GRPC_XDS_BOOTSTRAP_CONFIG` set.
`--xds-creds` uses `grpc.xds_channel_credentials` (gRFC A29: mTLS when the Cluster says so,
plaintext otherwise) instead of an insecure channel.

grpcio reads the bootstrap once per process, so each test runs its own client process. It
reads one JSON command per stdin line and answers one JSON line per command:

```
{"n": 20, "metadata": [["x-canary", "true"]], "timeout_s": 5, "wait_for_ready": true}
  -> {"calls": [[backend | null, "OK" | status name, elapsed_ms], ...]}
```

The method is `/test.Echo/Who`; a backend answers its own name (raw bytes, no stubs).
"""

from __future__ import annotations

import json
import sys
import time

import grpc
import grpc.experimental

METHOD = "/test.Echo/Who"


def main() -> None:
    if "--xds-creds" in sys.argv[2:]:
        creds = grpc.xds_channel_credentials(grpc.experimental.insecure_channel_credentials())
        channel = grpc.secure_channel(sys.argv[1], creds)
    else:
        channel = grpc.insecure_channel(sys.argv[1])
    who = channel.unary_unary(METHOD)  # no serializers: requests and responses are bytes
    for line in sys.stdin:
        cmd = json.loads(line)
        calls = []
        for _ in range(int(cmd.get("n", 1))):
            started = time.monotonic()
            try:
                body = who(
                    b"",
                    metadata=[tuple(m) for m in cmd.get("metadata", [])],
                    timeout=float(cmd.get("timeout_s", 5)),
                    wait_for_ready=bool(cmd.get("wait_for_ready", False)),
                )
                result = [body.decode(), "OK"]
            except grpc.RpcError as exc:
                result = [exc.details() if cmd.get("details") else None, exc.code().name]
            calls.append([*result, int((time.monotonic() - started) * 1000)])
        print(json.dumps({"calls": calls}), flush=True)
    channel.close()


if __name__ == "__main__":
    main()
