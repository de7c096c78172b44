"""`mesh check`'s certificates: the mesh CA (Secret turnout-identity) and the injector webhook.

```
turnout-identity   certificate config is valid       Secret turnout-identity holds
                                                     `mesh identity init`'s files
                   + engine.identity.health's five    anchors in validity / 60 days, issuer
                     checks (the ones `mesh identity  in validity / 60 days, issuer signed
                     status` makes)                   by an anchor
turnout-webhooks-and-apisvc-tls
                   injector webhook is configured     MutatingWebhookConfiguration turnout-
                                                     injector -> service turnout-injector
                   injector webhook has valid cert    Secret turnout-injector-tls's tls.crt
                                                     is signed by the caBundle, in validity,
                                                     names turnout-injector.NS.svc
                   injector cert is valid for at least 60 days                     (‼)
                   injector webhook is reachable      GET /ready through the service proxy,
                                                     or --injector-url verified against the
                                                     caBundle under the service's DNS name
```
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Mapping
from typing import Any

from cryptography import x509

from turnout.cluster import names
from turnout.cluster.check.api import ApiError, ClusterApi, answer, service_proxy
from turnout.cluster.check.probe import http_get
from turnout.cluster.check.results import Category, Check, Report, either, failed, ok, warned
from turnout.engine.identity.certs import load_certs_pem, signed_by
from turnout.engine.identity.health import EXPIRY_WARNING, ca_findings, ca_from_files

IDENTITY_HINTS = {
    "trust anchors are within their validity period": (
        "proxies cannot verify each other with an expired anchor: mesh identity rotate"
        " --anchor, then --issuer, then --drop-old-anchor, and update the Secret"
    ),
    "trust anchors are valid for at least 60 days": (
        "rotate the anchor before it expires: mesh identity rotate --anchor (three steps,"
        " no restart), then update the Secret"
    ),
    "issuer cert is within its validity period": (
        "no workload certificate can be issued: mesh identity rotate --issuer, then update"
        " the Secret"
    ),
    "issuer cert is valid for at least 60 days": (
        "rotate the issuer before it expires: mesh identity rotate --issuer, then update the Secret"
    ),
    "issuer cert is issued by the trust anchor": (
        "proxies trust only the bundle's anchors: rotate the issuer from the current anchor"
        " (mesh identity rotate --issuer)"
    ),
}


def secret_files(secret: Mapping[str, Any]) -> dict[str, bytes]:
    """A Secret's `data` (base64), decoded; a value that is not base64 raises `ValueError`."""
    out = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            out[str(key)] = base64.b64decode(str(value), validate=True)
        except binascii.Error:
            raise ValueError(f"data.{key}: not base64") from None
    return out


async def identity(report: Report, api: ClusterApi, *, namespace: str, now: dt.datetime) -> None:
    cat = report.category("turnout-identity")
    description = "certificate config is valid"
    where = f"secret/{names.IDENTITY_SECRET} in namespace {namespace}"
    hint = (
        "mesh serve --identity-dir reads this Secret's files: create it from a mesh identity"
        " init directory (kubectl create secret generic turnout-identity --from-file=DIR)"
    )
    try:
        secret = await api.get_or_none(
            f"/api/v1/namespaces/{namespace}/secrets/{names.IDENTITY_SECRET}"
        )
        if secret is None:
            cat.checks.append(failed(description, f"{where} not found", hint))
            return
        ca = ca_from_files(secret_files(secret))
    except (ApiError, ValueError) as exc:
        cat.checks.append(failed(description, f"{where}: {exc}", hint))
        return
    cat.checks.append(ok(description))
    for f in ca_findings(ca, now=now):
        cat.checks.append(
            either(f.description, f.error, IDENTITY_HINTS.get(f.description, ""), warning=f.warning)
        )


def _webhook_service(mwc: Mapping[str, Any]) -> tuple[Mapping[str, Any], bytes]:
    """(clientConfig.service, caBundle PEM) of the injector's webhook; `ValueError` says what
    is missing."""
    hooks = mwc.get("webhooks") or []
    if not hooks:
        raise ValueError("has no webhooks")
    config = hooks[0].get("clientConfig") or {}
    service = config.get("service") or {}
    if not service:
        raise ValueError("webhooks[0].clientConfig.service is not set")
    try:
        bundle = base64.b64decode(str(config.get("caBundle") or ""), validate=True)
    except binascii.Error:
        raise ValueError("webhooks[0].clientConfig.caBundle is not base64") from None
    if not bundle:
        raise ValueError("webhooks[0].clientConfig.caBundle is empty")
    return service, bundle


def _serving_cert_problem(
    cert: x509.Certificate, cas: list[x509.Certificate], dns: str, now: dt.datetime
) -> str:
    if not any(signed_by(cert, ca) for ca in cas):
        return f"the certificate ({cert.subject.rfc4514_string()}) is not signed by the webhook's caBundle"
    if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
        return f"the certificate is not valid now (valid {cert.not_valid_before_utc.isoformat()} to {cert.not_valid_after_utc.isoformat()})"
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = sans.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns_names = []
    if dns not in dns_names:
        return f"the certificate does not name {dns} (names: {', '.join(dns_names) or 'none'})"
    return ""


async def webhook(
    report: Report, api: ClusterApi, *, namespace: str, injector_url: str | None, now: dt.datetime
) -> None:
    cat = report.category("turnout-webhooks-and-apisvc-tls")
    name = names.WEBHOOK_CONFIGURATION
    path = f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{name}"
    hint = "mesh install renders the webhook with its certificate: re-apply mesh install | kubectl apply -f -"
    try:
        mwc = await api.get_or_none(path)
        if mwc is None:
            raise ValueError("not found")
        service, bundle = _webhook_service(mwc)
        cas = list(load_certs_pem(bundle))
    except (ApiError, ValueError) as exc:
        cat.checks.append(
            failed(
                "injector webhook is configured",
                f"mutatingwebhookconfiguration/{name}: {exc}",
                hint,
            )
        )
        return
    svc_ns, svc_name = service.get("namespace"), service.get("name")
    port = int(service.get("port") or 443)
    if (svc_ns, svc_name) != (namespace, names.INJECTOR_SERVICE):
        error = f"mutatingwebhookconfiguration/{name} calls service {svc_ns}/{svc_name}, not {namespace}/{names.INJECTOR_SERVICE}"
        cat.checks.append(failed("injector webhook is configured", error, hint))
        return
    cat.checks.append(ok("injector webhook is configured"))
    dns = f"{names.INJECTOR_SERVICE}.{namespace}.svc"
    cat.checks += await _serving_cert(api, namespace, cas, dns, now)
    cat.checks.append(await _reachable(api, namespace, port, bundle, dns, injector_url))


async def _serving_cert(
    api: ClusterApi, namespace: str, cas: list[x509.Certificate], dns: str, now: dt.datetime
) -> list[Check]:
    description = "injector webhook has valid cert"
    where = f"secret/{names.INJECTOR_TLS_SECRET} in namespace {namespace}"
    hint = (
        "the API server trusts the injector only through the webhook's caBundle: re-render"
        " both together with mesh install (the Secret and the caBundle must come from one run)"
    )
    try:
        secret = await api.get_or_none(
            f"/api/v1/namespaces/{namespace}/secrets/{names.INJECTOR_TLS_SECRET}"
        )
        if secret is None:
            raise ValueError("not found")
        crt = secret_files(secret).get("tls.crt")
        if not crt:
            raise ValueError("has no tls.crt")
        cert = load_certs_pem(crt)[0]
    except (ApiError, ValueError) as exc:
        return [failed(description, f"{where}: {exc}", hint)]
    problem = _serving_cert_problem(cert, cas, dns, now)
    if problem:
        return [failed(description, f"{where}: {problem}", hint)]
    checks = [ok(description)]
    left = cert.not_valid_after_utc - now
    if left < EXPIRY_WARNING:
        error = f"{where}: the certificate expires {cert.not_valid_after_utc.isoformat()}"
        checks.append(
            warned(
                "injector cert is valid for at least 60 days",
                error,
                "re-run mesh install to renew it",
            )
        )
    else:
        checks.append(ok("injector cert is valid for at least 60 days"))
    return checks


async def _reachable(
    api: ClusterApi, namespace: str, port: int, bundle: bytes, dns: str, injector_url: str | None
) -> Check:
    description = "injector webhook is reachable"
    if injector_url:
        where = f"{injector_url.rstrip('/')}/ready"
        status, body = await http_get(where, ca_pem=bundle, server_name=dns)
    else:
        where = f"service/{names.INJECTOR_SERVICE}:{port} /ready"
        try:
            status, body = await api.proxy_get(
                service_proxy(namespace, names.INJECTOR_SERVICE, port, "/ready", https=True)
            )
        except ApiError as exc:
            status, body = exc.status, str(exc)
    error = "" if status == 200 else f"{where}: {answer(status, body)}"
    hint = (
        "pods are created without a proxy while the API server cannot call the injector"
        " (failurePolicy Ignore) or not at all (Fail): is the controller running with"
        " --injector, and is its certificate the one the caBundle names?"
    )
    return either(description, error, hint)


def category_ok(cat: Category) -> bool:
    return all(c.result.value != "error" for c in cat.checks)
