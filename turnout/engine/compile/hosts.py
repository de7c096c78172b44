"""Hostnames: listener/route intersection and virtual-host order (HTTPROUTE-SEMANTICS §4).

A wildcard ``*.example.com`` matches one or more labels in front of ``example.com`` and
never ``example.com`` itself. Pure string functions; no DNS, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

ANY_HOST = "*"


def host_matches(host: str, pattern: str) -> bool:
    """Does a concrete (or wildcard) `host` fall under `pattern`?"""
    if pattern == ANY_HOST:
        return True
    if pattern.startswith("*."):
        suffix = pattern[1:]  # ".example.com"
        if host.startswith("*."):
            return (host[1:].endswith(suffix) and len(host) > len(pattern)) or host == pattern
        return host.endswith(suffix) and len(host) > len(suffix)
    return host == pattern


def intersect(route_host: str, listener_host: str | None) -> str | None:
    """The hostname a route serves on a listener, or None when they do not intersect.

    "a route `*.specific.com` intersects a listener `very.specific.com`, and then only
    `very.specific.com` is served; a route `foo.wildcard.io` intersects a listener
    `*.wildcard.io`" (§4)."""
    if listener_host is None or listener_host == ANY_HOST:
        return route_host
    if host_matches(route_host, listener_host):
        return route_host
    if host_matches(listener_host, route_host):
        return listener_host
    return None


def effective_hostnames(route_hosts: list[str], listener_host: str | None) -> list[str]:
    """Hostnames a route serves through one listener; [] = no intersection."""
    if not route_hosts:
        return [listener_host or ANY_HOST]
    out: list[str] = []
    for h in route_hosts:
        got = intersect(h, listener_host)
        if got is not None and got not in out:
            out.append(got)
    return out


def host_specificity(host: str) -> tuple[int, int, str]:
    """Sort key, most specific first: exact hosts, then longer wildcards, then ``*``.

    Gateway API: "Characters in a matching non-wildcard hostname. Characters in a matching
    hostname." An exact host beats any wildcard; a longer wildcard beats a shorter one."""
    if host == ANY_HOST:
        return (2, 0, host)
    if host.startswith("*."):
        return (1, -len(host), host)
    return (0, -len(host), host)


def owning_listener(host: str, listeners: Iterable[tuple[str, str | None]]) -> str | None:
    """Name of the listener that owns requests for `host` among `(name, hostname)` pairs of
    listeners sharing a port, or None when none covers it.

    "the most specific listener hostname that matches the Host wins (exact > longer wildcard >
    shorter wildcard > no hostname); routes of a less specific listener must not see requests
    that a more specific listener owns" (§4, GatewayHTTPListenerIsolation)."""
    covering = [
        (host_specificity(hostname or ANY_HOST), name)
        for name, hostname in listeners
        if host_matches(host, hostname or ANY_HOST)
    ]
    return min(covering)[1] if covering else None
