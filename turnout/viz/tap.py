"""Tap events (the NDJSON the control plane's ``/tap`` fans in) as ``linkerd viz tap`` lines.

```
{"type":"req","id":"3:0","direction":"outbound","src":…,"dst":…,"tls":…,"method":…,
 "authority":…,"path":…,"dst_service":…,"proxy":{"namespace","workload","pod","admin"}}
   └─ tap_line(event)            req id=3:0 proxy=out src=… dst=… tls=… :method=GET …
   └─ tap_line(event, wide=True)  … dst_ns=… dst_res=svc/emoji src_ns=… src_pod=… src_res=deploy/web
```

The fields are the proxy's `tap_json` (``turnout.proxy.tap``) plus the ``proxy`` labels the
control plane adds; a proxy tapped directly (``--admin``) has no ``proxy`` labels, so wide
lines carry only what the event itself knows. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

GRPC_CODE_NAMES: Final[tuple[str, ...]] = (
    *("OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound"),
    *("AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition"),
    *("Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss"),
    "Unauthenticated",
)
"""Go's names for the gRPC codes (``codes.Code.String()``), which ``viz tap`` prints."""

Event = Mapping[str, object]


def grpc_name(code: int) -> str:
    return GRPC_CODE_NAMES[code] if 0 <= code < len(GRPC_CODE_NAMES) else f"Code({code})"


def labels(event: Event) -> dict[str, str]:
    """``-o wide``'s ``src_``/``dst_``/``rt_`` labels: the tapped proxy's workload is the
    source of its outbound events and the destination of its inbound ones."""
    out: dict[str, str] = {}
    proxy = event.get("proxy")
    side = "src" if event.get("direction") == "outbound" else "dst"
    if isinstance(proxy, Mapping):
        if proxy.get("workload"):
            out[f"{side}_res"] = f"deploy/{proxy['workload']}"
        if proxy.get("namespace"):
            out[f"{side}_ns"] = str(proxy["namespace"])
        if proxy.get("pod"):
            out[f"{side}_pod"] = str(proxy["pod"])
    if event.get("dst_service"):
        out["dst_res"] = f"svc/{event['dst_service']}"
        out["dst_ns"] = str(event.get("dst_namespace", ""))
    return dict(sorted(out.items()))


def tap_line(event: Event, *, wide: bool = False) -> str:
    """One event as ``linkerd viz tap`` prints it."""
    e = event
    proxy = "in " if e.get("direction") == "inbound" else "out"
    kind = e.get("type")
    head = f"{kind} id={e.get('id')} proxy={proxy} src={e.get('src')} dst={e.get('dst')}"
    head += f" tls={e.get('tls')}"
    if kind == "req":
        line = f"{head} :method={e.get('method')} :authority={e.get('authority')}"
        line += f" :path={e.get('path')}"
    elif kind == "rsp":
        line = f"{head} :status={e.get('status')} latency={e.get('latency_us')}µs"
    else:
        if e.get("reset_error"):
            head += f" reset-error={e['reset_error']}"
        elif isinstance(code := e.get("grpc_status"), int):
            head += f" grpc-status={grpc_name(code)}"
        line = f"{head} duration={e.get('duration_us', 0)}µs"
        line += f" response-length={e.get('bytes', 0)}B"
    if not wide:
        return line
    extra = labels(e)
    if e.get("route"):
        extra["rt_route"] = str(e["route"])
    return " ".join([line, *(f"{k}={v}" for k, v in extra.items())])
