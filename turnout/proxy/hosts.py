"""Host-based selection: which listener a request is for, and which virtual host serves it.

```
Host header ──listener_for_host──> "NAME.NS.svc.cluster.local:PORT"   (the proxy's listener)
Host header ──HostIndex.lookup───> virtual host:
                1. exact domain            (a raw "name:port" dict first, to skip allocations)
                2. "*.suffix" wildcards, longest suffix first
                3. "*"
Host header ──HostIndex.domain_for──> the domain it matched by (the metrics' `authority`)
```

The port in the Host header is ignored (Gateway API §4: ``very.specific.com:1234`` matches
``very.specific.com``); domains that carry a port (Service parents list ``NAME:PORT`` too) are
indexed without it. Names compare case-insensitively. Only Gateway API's wildcard form
(``*.`` as the whole first label, matching one or more labels) is accepted; Envoy's other
forms (``*-bar.com``, ``foo.*``) are refused when the index is built.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Generic, TypeVar

from turnout.proxy.config import CLUSTER_DOMAIN, DEFAULT_SERVICE_PORT

log = logging.getLogger(__name__)

T = TypeVar("T")


def split_port(authority: str) -> tuple[str, int | None]:
    """``host:8080`` -> (``host``, 8080); ``[::1]:80`` -> (``[::1]``, 80); no port -> None."""
    if authority.startswith("["):
        end = authority.find("]")
        if end != -1:
            rest = authority[end + 1 :]
            if rest.startswith(":") and rest[1:].isdigit():
                return authority[: end + 1], int(rest[1:])
            return authority[: end + 1], None
    host, sep, port = authority.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, int(port)
    return authority, None


def strip_port(authority: str) -> str:
    return split_port(authority)[0]


class HostIndex(Generic[T]):
    """Domain -> value (a virtual host), first domain wins on duplicates after port removal."""

    __slots__ = ("any", "exact", "raw", "suffix")

    def __init__(self) -> None:
        self.raw: dict[str, T] = {}
        """Lower-cased authority exactly as listed (with port) -> value; a fast path only."""
        self.exact: dict[str, T] = {}
        self.suffix: dict[str, T] = {}
        """``.example.com`` -> value, for ``*.example.com``."""
        self.any: T | None = None

    @classmethod
    def build(cls, entries: Iterable[tuple[str, T]]) -> HostIndex[T]:
        """Index `(domain, value)` pairs; raise ValueError for an unsupported domain."""
        index: HostIndex[T] = cls()
        raws: list[tuple[str, str, T]] = []
        for domain, value in entries:
            lowered = domain.lower()
            host = strip_port(lowered)
            if host == "*":
                if index.any is None:
                    index.any = value
            elif host.startswith("*."):
                index.suffix.setdefault(host[1:], value)
            elif "*" in host or not host:
                raise ValueError(f"unsupported domain {domain!r} (want NAME, *.SUFFIX or *)")
            else:
                index.exact.setdefault(host, value)
                raws.append((lowered, host, value))
        for lowered, host, value in raws:
            # Keep the raw fast path only where it agrees with the port-less lookup.
            if index.exact[host] is value:
                index.raw.setdefault(lowered, value)
        return index

    def lookup(self, authority: str) -> T | None:
        found = self.raw.get(authority)
        if found is not None:
            return found
        host = strip_port(authority).lower()
        found = self.exact.get(host)
        if found is not None:
            return found
        if self.suffix:
            # Leftmost dot first = longest suffix first; the wildcard needs >= 1 label before it.
            i = host.find(".")
            while i > 0:
                found = self.suffix.get(host[i:])
                if found is not None:
                    return found
                i = host.find(".", i + 1)
        return self.any

    def domain_for(self, authority: str) -> str | None:
        """The domain `lookup` matches `authority` by, as indexed (lower case; ``*.SUFFIX``,
        ``*``); None when none does. Bounded by the table, unlike the Host header itself, so
        it can be a metric label."""
        lowered = authority.lower()
        if lowered in self.raw:
            return lowered
        host = strip_port(lowered)
        if host in self.exact:
            return host
        i = host.find(".")
        while i > 0:
            if host[i:] in self.suffix:
                return "*" + host[i:]
            i = host.find(".", i + 1)
        return None if self.any is None else "*"


def listener_for_host(
    host: str, *, namespace: str, default_port: int = DEFAULT_SERVICE_PORT
) -> str | None:
    """The Service listener name for a Host header, or None when it names no Service.

    ``NAME``, ``NAME.NS``, ``NAME.NS.svc`` and ``NAME.NS.svc.cluster.local``, each with an
    optional ``:PORT``, map to ``NAME.NS.svc.cluster.local:PORT``; a bare ``NAME`` is in the
    client's `namespace`, as Kubernetes DNS search paths resolve it.
    """
    name, port = split_port(host.strip().lower())
    labels = name.rstrip(".").split(".")
    if not all(labels):
        return None
    domain = CLUSTER_DOMAIN.split(".")
    if len(labels) == 1:
        svc, ns = labels[0], namespace
    elif (
        len(labels) == 2
        or (len(labels) == 3 and labels[2] == "svc")
        or labels[2:] == ["svc", *domain]
    ):
        svc, ns = labels[0], labels[1]
    else:
        return None
    return f"{svc}.{ns}.svc.{CLUSTER_DOMAIN}:{port if port is not None else default_port}"
