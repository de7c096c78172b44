"""The injector webhook: HTTPS, ``POST /inject`` (AdmissionReview v1), ``GET /ready``.

```
mesh serve --injector HOST:PORT --injector-cert-dir DIR
  CertificateFiles(DIR)   tls.crt + tls.key -> one ssl.SSLContext; every reload_interval_s
                          the files are read again and, when they changed, loaded into the
                          same context (new handshakes get the new certificate; a pair that
                          does not load is logged and the old one kept)
  POST /inject ──json──> namespace_annotations(ns) ──> admission.review_response ──> 200 JSON
  GET /ready             200 (the certificate loaded at start, or the server is not up)
```

Every review is answered ``allowed: true`` (`admission`): a body that is not JSON or not an
AdmissionReview gets 400 (nothing to echo; the API server then applies the webhook's
failurePolicy), any other failure an allowed answer with a warning. `InjectorError` (a leaf
of `engine.errors.MeshError`) is for what stops the webhook from starting: no certificate,
a port in use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from turnout.cluster import names
from turnout.cluster.inject.admission import BadReview, failed_response, review_response
from turnout.cluster.inject.namespaces import NamespaceAnnotations, no_namespaces
from turnout.cluster.inject.settings import DEFAULT_INJECT_SETTINGS, InjectSettings
from turnout.engine.errors import MeshError

log = logging.getLogger(__name__)


class InjectorError(MeshError):
    """The webhook cannot start: its certificate is missing or bad, its port is taken."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookSettings:
    reload_interval_s: float = 10.0
    """How often the certificate files are looked at."""
    max_body_bytes: int = 3 * 1024 * 1024
    """The API server's own request limit (3 MiB)."""
    namespace_timeout_s: float = 2.0
    """Longest wait for a namespace's annotations; then the pod's own annotation decides."""


class CertificateFiles:
    """`tls.crt` and `tls.key` in a directory, as one server `SSLContext`."""

    def __init__(self, directory: Path) -> None:
        self.cert = directory / "tls.crt"
        self.key = directory / "tls.key"
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._loaded: tuple[bytes, bytes] | None = None

    def refresh(self) -> bool:
        """Load the files if they changed; True when they did. Raises `InjectorError` when
        they cannot be read or do not load (the context keeps the previous pair)."""
        try:
            current = (self.cert.read_bytes(), self.key.read_bytes())
        except OSError as exc:
            raise InjectorError(f"cannot read {exc.filename}: {exc.strerror}") from None
        if current == self._loaded:
            return False
        try:
            self.context.load_cert_chain(self.cert, self.key)
        except (ssl.SSLError, OSError) as exc:
            raise InjectorError(f"{self.cert} and {self.key} do not load: {exc}") from None
        self._loaded = current
        return True


class InjectorWebhook:
    """The webhook's HTTPS server (start, `port`, stop)."""

    def __init__(
        self,
        cert_dir: Path,
        *,
        settings: InjectSettings = DEFAULT_INJECT_SETTINGS,
        namespace_annotations: NamespaceAnnotations = no_namespaces,
        webhook: WebhookSettings = WebhookSettings(),
    ) -> None:
        self.files = CertificateFiles(cert_dir)
        self.settings = settings
        self._namespaces = namespace_annotations
        self._webhook = webhook
        self._runner: web.AppRunner | None = None
        self._reload: asyncio.Task[None] | None = None
        self.port = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self._webhook.max_body_bytes)
        app.router.add_post(names.INJECTOR_PATH, self._inject)
        app.router.add_get("/ready", self._ready)
        return app

    async def start(self, host: str, port: int) -> int:
        await asyncio.to_thread(self.files.refresh)  # InjectorError: nothing started
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=self.files.context)
        try:
            await site.start()
        except OSError as exc:
            await self.stop()
            raise InjectorError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        server = site._server
        sockets = getattr(server, "sockets", None) or ()
        self.port = sockets[0].getsockname()[1] if sockets else port
        self._reload = asyncio.create_task(self._reload_loop(), name="injector-cert-reload")
        log.info("injector listening host=%s port=%d", host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._reload is not None:
            self._reload.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reload
            self._reload = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(self._webhook.reload_interval_s)
            try:
                if await asyncio.to_thread(self.files.refresh):
                    log.info("injector certificate reloaded cert=%s", self.files.cert)
            except InjectorError as exc:
                log.warning("injector certificate kept: %s", exc)
            except Exception:
                log.exception("injector certificate reload crashed")

    async def _ready(self, request: web.Request) -> web.Response:
        return web.Response(text="ready\n")

    async def _inject(self, request: web.Request) -> web.Response:
        try:
            review = json.loads(await request.read())
            request_of_review = review["request"]
            if not isinstance(request_of_review, Mapping):
                raise BadReview("request is not an object")
        except web.HTTPRequestEntityTooLarge:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            return web.Response(status=400, text=f"not an AdmissionReview: {exc}\n")
        try:
            answer = await self._answer(review, str(request_of_review.get("namespace") or ""))
        except BadReview as exc:
            return web.Response(status=400, text=f"not an AdmissionReview: {exc}\n")
        return web.json_response(answer)

    async def _answer(self, review: Mapping[str, Any], namespace: str) -> dict[str, Any]:
        annotations = await self._namespace_annotations(namespace)
        try:
            return review_response(
                review, settings=self.settings, namespace_annotations=annotations
            )
        except BadReview:
            raise
        except Exception as exc:  # never block a pod: allowed, with why (STYLE §4)
            log.error("admission review failed namespace=%s", namespace, exc_info=True)
            return failed_response(review, f"{type(exc).__name__}: {exc}")

    async def _namespace_annotations(self, namespace: str) -> Mapping[str, str] | None:
        """The namespace's annotations; None (only the pod's own count) when unknown."""
        if not namespace:
            return None
        try:
            async with asyncio.timeout(self._webhook.namespace_timeout_s):
                return await self._namespaces(namespace)
        except Exception as exc:
            log.warning("namespace annotations unknown namespace=%s error=%r", namespace, exc)
            return None
