"""A proxyless grpcio client calling in a loop, run as a subprocess:
`python -m tests.reliability.grpc_loop xds:///NAME.NS.svc.cluster.local:PORT` with
`GRPC_XDS_BOOTSTRAP_CONFIG` set.

It waits for its first successful call (wait_for_ready, up to 20 s), prints ``ready``, then
calls `/test.Echo/Who` back to back in a background thread (1 s deadline each, no
wait_for_ready: a call that cannot be routed fails). Each stdin line is a command:

```
stats -> {"ok": {backend: n}, "failed": {status: n}, "recent": [last 20 backends]}
```

EOF on stdin stops it.
"""

from __future__ import annotations

import collections
import json
import sys
import threading

import grpc

METHOD = "/test.Echo/Who"


def main() -> None:
    channel = grpc.insecure_channel(sys.argv[1])
    who = channel.unary_unary(METHOD)  # no serializers: requests and responses are bytes
    who(b"", timeout=20, wait_for_ready=True)
    print("ready", flush=True)
    lock = threading.Lock()
    ok: collections.Counter[str] = collections.Counter()
    failed: collections.Counter[str] = collections.Counter()
    recent: collections.deque[str] = collections.deque(maxlen=20)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                backend = who(b"", timeout=1.0).decode()
            except grpc.RpcError as exc:
                with lock:
                    failed[exc.code().name] += 1
                continue
            with lock:
                ok[backend] += 1
                recent.append(backend)

    thread = threading.Thread(target=loop, name="calls", daemon=True)
    thread.start()
    for _ in sys.stdin:
        with lock:
            stats = {"ok": dict(ok), "failed": dict(failed), "recent": list(recent)}
        print(json.dumps(stats), flush=True)
    stop.set()
    thread.join(timeout=5)
    channel.close()


if __name__ == "__main__":
    main()
