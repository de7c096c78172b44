"""TLS termination on a listener: SNI picks the certificate, the Host must belong to it.

```
TlsSlot.context (one fixed server context: TLS >= 1.2, ALPN http/1.1, no certificate)
  ClientHello ─► sni_callback(sslobj, server_name) ─► slot.terminator.choose(name) ─► Chain
        │         no chain: alert unrecognized_name; chain without certificates:
        │         handshake_failure; else sslobj.context = chain.context
        └─ the chain is remembered per SSLObject until the connection asks (`session`)
  connection_made (after the handshake) ─► slot.session(ssl_object) ─► Chain
  each request ─► chain.allows(Host) ─ False: 421 Misdirected Request (the handler's)
```

A `Terminator` is built per table update (one `Chain` per HTTPS listener of the Gateway
port, in the table's order) and swapped into the slot atomically: a handshake that has
begun keeps the chain it chose, a connection keeps its certificate for its life, and new
handshakes see the new certificates, which is how rotation works without a restart or a
rebind. The listening socket's context never changes; only what the callback chooses.

Choosing follows the Gateway API: an exact hostname before the longest wildcard that
matches (`*.example.com` matches one or more labels in front), then a listener without a
hostname; a ClientHello without SNI gets only a listener without a hostname.

Certificates are loaded through `ssl`, which reads files only: each pair goes through a
private temporary file (mode 0600, in /dev/shm when there is one, removed at once), and a
context is cached per set of pairs so a table update that keeps them reuses it.

Each chain's context offers the ALPN protocols its table gives (`h2`, `http/1.1`); the SNI
callback switching to it makes its list the one negotiated. Deliberately not here: client
certificates (mTLS is the identity issue's), session tickets and resumption across
contexts, serving HTTP/2 (the connection's preface goes to `h2_server`), reading xDS
(`listener_tls.py` in the proxy package).
"""

from __future__ import annotations

import functools
import logging
import os
import ssl
import tempfile
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

_SHM = "/dev/shm"


class CertificateError(ValueError):
    """A certificate/key pair that `ssl` cannot load (the reason in the message)."""


@dataclass(frozen=True, slots=True)
class Pair:
    """One certificate chain (PEM, leaf first) and its private key (PEM)."""

    chain_pem: bytes
    key_pem: bytes = field(repr=False)


def server_context(alpn: tuple[str, ...] = ("http/1.1",)) -> ssl.SSLContext:
    """A server context as every chain's: TLS 1.2 and later, the given ALPN protocols."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_TICKET  # a ticket would outlive a rotated certificate
    ctx.num_tickets = 0  # TLS 1.3's tickets too
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


@functools.lru_cache(maxsize=64)
def load_context(pairs: tuple[Pair, ...], alpn: tuple[str, ...] = ("http/1.1",)) -> ssl.SSLContext:
    """A server context serving `pairs` (one per key type; OpenSSL picks by the client's
    signature algorithms), or `CertificateError`."""
    ctx = server_context(alpn)
    for i, pair in enumerate(pairs):
        try:
            _load_pair(ctx, pair)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise CertificateError(f"certificate {i}: {_reason(exc)}") from exc
    return ctx


def load_pair(ctx: ssl.SSLContext, pair: Pair) -> None:
    """Load `pair` into `ctx` (through a private temporary file, see the module docstring);
    `ssl.SSLError` or `OSError` when it does not load."""
    _load_pair(ctx, pair)


def _load_pair(ctx: ssl.SSLContext, pair: Pair) -> None:
    where = _SHM if os.path.isdir(_SHM) and os.access(_SHM, os.W_OK) else None
    fd, path = tempfile.mkstemp(prefix="turnout-tls-", suffix=".pem", dir=where)
    try:
        with os.fdopen(fd, "wb") as f:  # mkstemp: mode 0600, only this user reads it
            f.write(pair.chain_pem.rstrip(b"\n") + b"\n" + pair.key_pem)
        ctx.load_cert_chain(path)
    finally:
        os.unlink(path)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason.lower().replace("_", " ")
    return str(exc) or type(exc).__name__


def host_matches(pattern: str, host: str) -> bool:
    """A listener hostname against a lowercase name: exact, or `*.suffix` with one or more
    labels in front (the Gateway API's wildcard)."""
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


class Chain:
    """One HTTPS listener: its hostnames (empty: any) and its certificates (None: it has
    none usable, so its handshakes are refused)."""

    __slots__ = ("_allowed", "_terminator", "context", "name", "server_names")

    def __init__(
        self, name: str, server_names: Sequence[str], context: ssl.SSLContext | None
    ) -> None:
        self.name = name
        self.server_names = tuple(n.lower().rstrip(".") for n in server_names)
        self.context = context
        self._terminator: Terminator | None = None
        self._allowed: dict[str, bool] = {}

    def allows(self, host: str) -> bool:
        """A request's Host (port, case and a final dot ignored) is this listener's: the
        listener its hostname would choose as an SNI is this one (Gateway API: a request
        for another listener's hostname is misdirected, even one this one's wildcard
        covers)."""
        seen = self._allowed.get(host)
        if seen is None:
            name = _hostname(host)
            owner = self._terminator
            seen = owner is None or owner.choose(name or None) is self
            if len(self._allowed) < 1024:
                self._allowed[host] = seen
        return seen

    def __repr__(self) -> str:
        return (
            f"Chain({self.name!r}, {list(self.server_names)!r}, loaded={self.context is not None})"
        )


def _hostname(host: str) -> str:
    if host.startswith("["):  # [v6]:port
        return host.partition("]")[0][1:].lower()
    name, _, port = host.rpartition(":")
    if not name or not port.isdigit():
        name = host
    return name.lower().rstrip(".")


class Terminator:
    """The chains of one listening port, as one table gives them (see module docstring)."""

    __slots__ = ("_exact", "_unnamed", "_wildcards", "chains")

    def __init__(self, chains: Sequence[Chain]) -> None:
        self.chains = tuple(chains)
        self._exact: dict[str, Chain] = {}
        wildcards: list[tuple[str, Chain]] = []
        self._unnamed: Chain | None = None
        for chain in self.chains:
            chain._terminator = self
            if not chain.server_names and self._unnamed is None:
                self._unnamed = chain
            for n in chain.server_names:
                if n.startswith("*."):
                    wildcards.append((n, chain))
                else:
                    self._exact.setdefault(n, chain)
        # the longest suffix first: the most specific wildcard wins
        self._wildcards = tuple(sorted(wildcards, key=lambda w: -len(w[0])))

    def choose(self, server_name: str | None) -> Chain | None:
        """The chain for a ClientHello's SNI (None: no SNI); None: no listener takes it."""
        if server_name is None:
            return self._unnamed
        name = server_name.lower().rstrip(".")
        chain = self._exact.get(name)
        if chain is not None:
            return chain
        for pattern, chain in self._wildcards:
            if host_matches(pattern, name):
                return chain
        return self._unnamed


class TlsSlot:
    """One listening socket's TLS: the fixed context `loop.create_server` gets, and the
    replaceable `terminator` its SNI callback consults (see the module docstring)."""

    __slots__ = ("_chosen", "context", "terminator")

    def __init__(self, terminator: Terminator | None = None) -> None:
        self.terminator = terminator or Terminator(())
        self._chosen: weakref.WeakKeyDictionary[ssl.SSLObject, Chain] = weakref.WeakKeyDictionary()
        self.context = server_context()
        self.context.sni_callback = self._on_sni

    def _on_sni(self, sslobj: ssl.SSLObject, server_name: str | None, _ctx: object) -> int | None:
        chain = self.terminator.choose(server_name)
        if chain is None:
            log.debug("tls handshake refused: no listener for sni=%s", server_name)
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        if chain.context is None:
            log.debug("tls handshake refused: listener %s has no certificate", chain.name)
            return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
        sslobj.context = chain.context
        self._chosen[sslobj] = chain
        return None

    def session(self, sslobj: object) -> Chain | None:
        """The chain the handshake of `sslobj` chose (once; None: unknown)."""
        if not isinstance(sslobj, ssl.SSLObject):
            return None
        return self._chosen.pop(sslobj, None)
