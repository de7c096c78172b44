"""The kubelet's HTTP probes of the app, made by the proxy (Istio's probe rewriting).

With PeerAuthentication STRICT on an app port the kubelet's plaintext probe GETs would be
reset, so the injector points each app container's httpGet probe at the proxy's admin port
(`mesh proxy-init` never captures it) and hands the originals to the proxy:

```
--app-probes '{"web/livez": {"port": 8080, "path": "/healthz", "scheme": "HTTP",
               "httpHeaders": [{"name": "x", "value": "y"}], "timeoutSeconds": 1}}'
GET /app-health/web/livez on the admin port
    -> GET http://127.0.0.1:8080/healthz (the probe's headers, its timeout), plaintext and
       straight to the app, so inbound policy never sees it
    <- the app's status (the kubelet counts 200-399 as success), 503 when the app cannot
       be reached or does not answer within the timeout
```

``host`` (the probe's ``httpGet.host``) replaces 127.0.0.1 when the probe names one. An
HTTPS probe is made over TLS without verifying the certificate, as the kubelet does.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import ssl

APP_HEALTH_PREFIX: Final = "/app-health/"
"""The admin path of a rewritten probe: ``/app-health/<container>/<livez|readyz|startupz>``."""
PROBE_KINDS: Final = {
    "livenessProbe": "livez",
    "readinessProbe": "readyz",
    "startupProbe": "startupz",
}
"""A container's probe field -> the last segment of its ``/app-health`` path."""
DEFAULT_TIMEOUT_S: Final = 1.0
"""The kubelet's ``timeoutSeconds`` default."""
USER_AGENT: Final = "kube-probe/turnout"
MAX_STATUS_LINE: Final = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class AppProbe:
    """One original httpGet probe, its named port already resolved."""

    port: int
    path: str = "/"
    scheme: str = "HTTP"
    host: str = "127.0.0.1"
    headers: tuple[tuple[str, str], ...] = ()
    timeout_s: float = DEFAULT_TIMEOUT_S


def parse_app_probes(text: str) -> tuple[tuple[str, AppProbe], ...]:
    """``--app-probes``' JSON -> (``container/kind``, probe) pairs; ValueError when a key or
    a field is not what the injector writes."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("want an object of CONTAINER/KIND: probe")
    return tuple((key, _probe(key, value)) for key, value in data.items())


def _probe(key: str, value: Any) -> AppProbe:
    container, slash, kind = key.partition("/")
    if not container or not slash or kind not in PROBE_KINDS.values():
        raise ValueError(f"{key!r}: want CONTAINER/livez|readyz|startupz")
    if not isinstance(value, dict):
        raise ValueError(f"{key!r}: want an object")
    port, path = value.get("port"), value.get("path", "/")
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"{key!r}: port must be 1-65535, got {port!r}")
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"{key!r}: path must start with /, got {path!r}")
    scheme = str(value.get("scheme", "HTTP")).upper()
    if scheme not in ("HTTP", "HTTPS"):
        raise ValueError(f"{key!r}: scheme must be HTTP or HTTPS, got {scheme!r}")
    headers = []
    for h in value.get("httpHeaders") or ():
        if not isinstance(h, dict) or not isinstance(h.get("name"), str) or not h["name"]:
            raise ValueError(f"{key!r}: a header must be {{name, value}}, got {h!r}")
        headers.append((h["name"], str(h.get("value", ""))))
    timeout = value.get("timeoutSeconds", DEFAULT_TIMEOUT_S)
    if not isinstance(timeout, int | float) or timeout <= 0:
        raise ValueError(f"{key!r}: timeoutSeconds must be positive, got {timeout!r}")
    return AppProbe(
        port=port,
        path=path,
        scheme=scheme,
        host=str(value.get("host") or "127.0.0.1"),
        headers=tuple(headers),
        timeout_s=float(timeout),
    )


def _insecure_tls() -> ssl.SSLContext:
    import ssl  # only an HTTPS probe pays for it

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def request_bytes(probe: AppProbe) -> bytes:
    """The GET the kubelet would send: its Host and User-Agent unless the probe sets them."""
    host = f"[{probe.host}]" if ":" in probe.host else probe.host
    fields: dict[str, tuple[str, str]] = {
        "host": ("Host", f"{host}:{probe.port}"),
        "user-agent": ("User-Agent", USER_AGENT),
        "accept": ("Accept", "*/*"),
    }
    for name, value in probe.headers:
        fields[name.lower()] = (name, value)
    fields["connection"] = ("Connection", "close")
    head = "".join(
        f"{n}: {v}\r\n" for n, v in fields.values() if "\r" not in v + n and "\n" not in v + n
    )
    return f"GET {probe.path} HTTP/1.1\r\n{head}\r\n".encode("latin-1")


async def run_probe(probe: AppProbe) -> tuple[int, str]:
    """The app's status for `probe` and why; 503 when it cannot be reached in time."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(probe.timeout_s):
            tls = _insecure_tls() if probe.scheme == "HTTPS" else None
            reader, writer = await asyncio.open_connection(probe.host, probe.port, ssl=tls)
            writer.write(request_bytes(probe))
            await writer.drain()
            line = await reader.readuntil(b"\n")
    except TimeoutError:
        return 503, f"no answer within {probe.timeout_s:g}s"
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        return 503, f"probe failed: {exc!r}"
    finally:
        if writer is not None:
            writer.close()
    parts = line[:MAX_STATUS_LINE].decode("latin-1").split()
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return 503, "not an HTTP response"
    return int(parts[1]), f"app answered {parts[1]}"
