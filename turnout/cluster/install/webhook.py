"""The injector's MutatingWebhookConfiguration and its serving certificate.

```
new CA (P-256, CA:TRUE) ──signs──> leaf  DNS: turnout-injector.NS.svc[.cluster.local]
   │                                  │    serverAuth, what `mesh serve --injector` serves
   v                                  v
caBundle of the webhook     Secret turnout-injector-tls {tls.crt, tls.key}
(the API server trusts it)  mounted at --injector-cert-dir
```

The webhook sends every Pod CREATE (AdmissionReview v1) to ``turnout-injector:443/inject``,
except in the control plane's own namespace and the system ones (`names.NEVER_INJECTED_
NAMESPACES`), which its namespaceSelector leaves out by the ``kubernetes.io/metadata.name``
label every Namespace carries. Whether a pod is injected (``turnout.dev/inject``) is the
webhook's decision (`cluster.inject`), not a selector's: annotations cannot be selected.
Every `mesh install` makes a new CA and leaf (the Secret keeps the CA as ``ca.crt``, so
`mesh upgrade` can render the same caBundle); the controller reloads the files when the
Secret changes. Deliberately not here: serving the webhook (`cluster.inject`).
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from turnout.cluster import names
from turnout.cluster.install.labels import labels, metadata
from turnout.cluster.install.values import Values, duration_ms
from turnout.engine.identity.certs import PrivateKey, cert_pem, key_pem, key_usage, new_key

Raw = dict[str, Any]

WEBHOOK_NAME = "injector.turnout.dev"
"""The webhook's name inside the configuration (a qualified name, as the API requires)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServingCert:
    """PEM of the webhook's CA and of the leaf the injector serves."""

    ca_crt: bytes
    tls_crt: bytes
    tls_key: bytes


def dns_names(namespace: str) -> tuple[str, ...]:
    """The names the API server may dial the injector Service by."""
    svc = f"{names.INJECTOR_SERVICE}.{namespace}.svc"
    return (svc, f"{svc}.cluster.local")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(
    subject: str, issuer: str, key: PrivateKey, *, now: dt.datetime, lifetime: dt.timedelta
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + lifetime)
    )


def make_serving_cert(namespace: str, *, now: dt.datetime, lifetime: dt.timedelta) -> ServingCert:
    """A fresh CA and a leaf for the injector Service of `namespace`."""
    ca_key, leaf_key = new_key(), new_key()
    ca_cn = f"{names.INJECTOR_SERVICE}-ca.{namespace}"
    ca = (
        _builder(ca_cn, ca_cn, ca_key, now=now, lifetime=lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    sans = dns_names(namespace)
    leaf = (
        _builder(sans[0], ca_cn, leaf_key, now=now, lifetime=lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return ServingCert(ca_crt=cert_pem(ca), tls_crt=cert_pem(leaf), tls_key=key_pem(leaf_key))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def tls_secret(values: Values, cert: ServingCert) -> Raw:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(names.INJECTOR_TLS_SECRET, values.namespace, "injector"),
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": b64(cert.tls_crt),
            "tls.key": b64(cert.tls_key),
            "ca.crt": b64(cert.ca_crt),  # what `mesh upgrade` puts back in the caBundle
        },
    }


def webhook_configuration(values: Values, cert: ServingCert) -> Raw:
    """Pods created outside the control plane and system namespaces go to /inject."""
    skipped = sorted({values.namespace, *names.NEVER_INJECTED_NAMESPACES})
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": names.WEBHOOK_CONFIGURATION, "labels": labels("injector")},
        "webhooks": [
            {
                "name": WEBHOOK_NAME,
                "admissionReviewVersions": ["v1"],
                "clientConfig": {
                    "service": {
                        "name": names.INJECTOR_SERVICE,
                        "namespace": values.namespace,
                        "path": names.INJECTOR_PATH,
                        "port": 443,
                    },
                    "caBundle": b64(cert.ca_crt),
                },
                "rules": [
                    {
                        "operations": ["CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": {
                    "matchExpressions": [
                        {
                            "key": "kubernetes.io/metadata.name",
                            "operator": "NotIn",
                            "values": skipped,
                        }
                    ]
                },
                "sideEffects": "None",
                "failurePolicy": values.injector.failure_policy,
                "timeoutSeconds": values.injector.timeout_seconds,
                "reinvocationPolicy": "Never",
            }
        ],
    }


def serving_cert_for(values: Values, *, now: dt.datetime) -> ServingCert:
    lifetime = dt.timedelta(milliseconds=duration_ms(values.injector.cert_validity))
    return make_serving_cert(values.namespace, now=now, lifetime=lifetime)
