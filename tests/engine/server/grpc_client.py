"""A proxyless grpcio client, run as a subprocess: `python -m tests.engine.server.grpc_client
xds:///NAME.NS.svc.cluster.local:PORT` with `GRPC_XDS_BOOTSTRAP_CONFIG` set.

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

METHOD = "/test.Echo/Who"


def main() -> None:
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
                result = [None, exc.code().name]
            calls.append([*result, int((time.monotonic() - started) * 1000)])
        print(json.dumps({"calls": calls}), flush=True)
    channel.close()


if __name__ == "__main__":
    main()
