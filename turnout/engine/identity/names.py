"""Identity names: a workload's service account as the DNS-like name and the SPIFFE id.

```
ServiceAccount(ns="shop", name="web")
  ├── identity_name(..., domain) -> "web.shop.serviceaccount.identity.cluster.local"   (DNS SAN)
  ├── spiffe_id(..., domain)     -> "spiffe://cluster.local/ns/shop/sa/web"            (URI SAN)
  └── username                   -> "system:serviceaccount:shop:web"    (a TokenReview's user)
parse_identity(name, domain) / parse_spiffe_id(uri, domain) / parse_username(user) -> back
```

The DNS form is Linkerd's without its control-plane namespace label
(`<sa>.<ns>.serviceaccount.identity.<domain>`); the URI form is the one SPIRE issues for
Linkerd. A namespace is a DNS label (no dots) and a service account name a DNS subdomain
(dots allowed), so the name before the suffix splits at its last dot. Pure functions; no
I/O, no crypto.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

IDENTITY_INFIX = ".serviceaccount.identity."
SPIFFE_SCHEME = "spiffe://"
USERNAME_PREFIX = "system:serviceaccount:"

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceAccount:
    """A Kubernetes service account: who a workload is."""

    namespace: str
    """A DNS label (RFC 1123), e.g. ``shop``."""
    name: str
    """A DNS subdomain (RFC 1123, at most 253 characters), e.g. ``web``."""

    @property
    def username(self) -> str:
        """The API server's user name of the account's tokens."""
        return f"{USERNAME_PREFIX}{self.namespace}:{self.name}"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def check_service_account(namespace: str, name: str) -> ServiceAccount:
    """`ServiceAccount(namespace, name)` after checking both names; `ValueError` names the
    one that is not a Kubernetes name."""
    if not _LABEL.fullmatch(namespace):
        raise ValueError(f"namespace {namespace!r} is not a DNS label (RFC 1123)")
    if len(name) > 253 or not _SUBDOMAIN.fullmatch(name):
        raise ValueError(f"service account {name!r} is not a DNS subdomain (RFC 1123)")
    return ServiceAccount(namespace=namespace, name=name)


def check_domain(domain: str) -> str:
    """A trust domain (``cluster.local``): a DNS subdomain, returned as given."""
    if len(domain) > 253 or not _SUBDOMAIN.fullmatch(domain):
        raise ValueError(f"trust domain {domain!r} is not a DNS name (RFC 1123, lowercase)")
    return domain


def identity_name(sa: ServiceAccount, domain: str) -> str:
    """``<sa>.<ns>.serviceaccount.identity.<domain>``: the leaf's one DNS SAN."""
    return f"{sa.name}.{sa.namespace}{IDENTITY_INFIX}{domain}"


def spiffe_id(sa: ServiceAccount, domain: str) -> str:
    """``spiffe://<domain>/ns/<ns>/sa/<sa>``: the URI SAN the issuer adds."""
    return f"{SPIFFE_SCHEME}{domain}/ns/{sa.namespace}/sa/{sa.name}"


def parse_identity(name: str, domain: str) -> ServiceAccount:
    """The service account an identity name of `domain` stands for; `ValueError` says why
    `name` is not one."""
    suffix = f"{IDENTITY_INFIX}{domain}"
    head = name.removesuffix(suffix)
    sa, dot, ns = head.rpartition(".")
    if head == name or not dot:
        raise ValueError(
            f"identity {name!r} is not of the form <sa>.<ns>{suffix} (trust domain {domain})"
        )
    return check_service_account(ns, sa)


def parse_spiffe_id(uri: str, domain: str) -> ServiceAccount:
    """The service account of ``spiffe://<domain>/ns/<ns>/sa/<sa>``; `ValueError` otherwise."""
    prefix = f"{SPIFFE_SCHEME}{domain}/ns/"
    ns, sep, sa = uri.removeprefix(prefix).partition("/sa/")
    if not uri.startswith(prefix) or not sep:
        raise ValueError(f"{uri!r} is not of the form {prefix}<ns>/sa/<sa>")
    return check_service_account(ns, sa)


def parse_username(user: str) -> ServiceAccount:
    """``system:serviceaccount:<ns>:<sa>`` -> the account; `ValueError` for other users."""
    ns, sep, sa = user.removeprefix(USERNAME_PREFIX).partition(":")
    if not user.startswith(USERNAME_PREFIX) or not sep:
        raise ValueError(f"user {user!r} is not a service account ({USERNAME_PREFIX}<ns>:<sa>)")
    return check_service_account(ns, sa)
