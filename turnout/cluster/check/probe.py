"""Direct HTTP(S) probes of `mesh check` (`--control-plane`, `--injector-url`), with aiohttp.

`http_get(url, ca_pem=..., server_name=...)` verifies an HTTPS server against `ca_pem` only
(the webhook's caBundle, as the API server would) under the name the API server dials
(``turnout-injector.turnout.svc``), whatever host the URL names. Every failure is a
(0, "what went wrong") answer, never an exception: a probe is a finding.
"""

from __future__ import annotations

import ssl

import aiohttp

PROBE_TIMEOUT_S = 5.0


async def http_get(
    url: str,
    *,
    ca_pem: bytes | None = None,
    server_name: str | None = None,
    timeout_s: float = PROBE_TIMEOUT_S,
) -> tuple[int, str]:
    """(status, body) of a GET; (0, reason) when there is no HTTP answer."""
    context: ssl.SSLContext | bool = True
    if ca_pem is not None:
        context = ssl.create_default_context(cadata=ca_pem.decode("ascii", errors="replace"))
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            kwargs: dict[str, object] = {"ssl": context}
            if server_name:
                kwargs["server_hostname"] = server_name
            async with session.get(url, **kwargs) as resp:  # type: ignore[arg-type]
                return resp.status, await resp.text()
    except aiohttp.ClientConnectorCertificateError as exc:
        return 0, f"certificate not trusted: {exc.certificate_error}"
    except aiohttp.ClientSSLError as exc:
        return 0, f"TLS failed: {exc}"
    except (aiohttp.ClientError, TimeoutError, ssl.SSLError, ValueError) as exc:
        return 0, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
