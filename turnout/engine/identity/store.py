"""The CA on disk: one directory, written by `mesh identity init|rotate`, read by `mesh serve`.

```
DIR/ config.json    trust domain, leaf lifetime, clock skew, CA lifetimes, rotation times
     anchor.crt     the current trust anchor        anchor.key  (0600)
     issuer.crt     the issuer, signed by an anchor  issuer.key  (0600)
     bundle.pem     the trusted anchors: the current one, and the old one during a rotation
     token.key      (0600) the HMAC key of join tokens (tokens.py)

anchor rotation, Linkerd's three steps without restarts (every Certify response carries
the bundle, so proxies take it at their next renewal):
  1. rotate --anchor           bundle = old + new anchor; the issuer is still the old one's
  2. rotate --issuer           a new issuer from the new anchor (after every proxy renewed)
  3. rotate --drop-old-anchor  bundle = new anchor (after every leaf was re-issued)
```

Each file is replaced atomically (written beside it, then renamed), keys first, so a reader
sees old or new files, never a half-written one; `AuthorityFiles` re-reads them when they
change and keeps the last good authority if the new files do not fit together (an issuer
whose key is not written yet, an issuer no anchor signed). This module does the blocking file
I/O: the service calls it off the event loop.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from cryptography import x509

from turnout.engine.identity.authority import Authority, check_issuer
from turnout.engine.identity.certs import (
    PrivateKey,
    cert_pem,
    certs_pem,
    fingerprint,
    key_pem,
    load_certs_pem,
    load_key_pem,
    make_anchor,
    make_issuer,
    new_key,
    signed_by,
)
from turnout.engine.identity.clock import Clock, utc_now
from turnout.engine.identity.errors import StoreError
from turnout.engine.identity.names import check_domain
from turnout.engine.identity.settings import IdentitySettings

log = logging.getLogger(__name__)

T = TypeVar("T")

CONFIG = "config.json"
ANCHOR_CRT, ANCHOR_KEY = "anchor.crt", "anchor.key"
ISSUER_CRT, ISSUER_KEY = "issuer.crt", "issuer.key"
BUNDLE = "bundle.pem"
TOKEN_KEY = "token.key"
WATCHED = (CONFIG, ISSUER_CRT, ISSUER_KEY, BUNDLE)
"""What the serving side reloads when it changes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Material:
    """Everything in the directory, parsed."""

    settings: IdentitySettings
    anchor: x509.Certificate
    anchor_key: PrivateKey
    issuer: x509.Certificate
    issuer_key: PrivateKey
    bundle: tuple[x509.Certificate, ...]
    token_key: bytes


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise StoreError(
            f"{path}: missing; is this an identity directory (mesh identity init)?"
        ) from None
    except OSError as exc:
        raise StoreError(f"{path}: {exc.strerror or exc}") from None


def _parse(path: Path, parse: Callable[[bytes], T]) -> T:
    data = _read(path)
    try:
        return parse(data)
    except ValueError as exc:
        raise StoreError(f"{path}: {exc}") from None


def _settings_of(data: bytes) -> IdentitySettings:
    raw = json.loads(data)
    fields = IdentitySettings.__dataclass_fields__
    known = {k: v for k, v in raw.items() if k in fields}
    bad = [k for k, v in known.items() if not isinstance(v, int if k != "domain" else str)]
    if bad:
        raise ValueError(f"field {bad[0]!r} has the wrong type")
    settings = IdentitySettings(**known)
    check_domain(settings.domain)
    if settings.leaf_lifetime_ms < 1000:
        raise ValueError("field 'leaf_lifetime_ms' must be at least 1000")
    return settings


def load_material(directory: Path) -> Material:
    """Every file of `directory`, parsed and checked to fit together; `StoreError` names the
    file that does not."""
    if not directory.is_dir():
        raise StoreError(f"{directory}: not a directory")
    settings = _parse(directory / CONFIG, _settings_of)
    anchor = _parse(directory / ANCHOR_CRT, x509.load_pem_x509_certificate)
    anchor_key = _parse(directory / ANCHOR_KEY, load_key_pem)
    issuer = _parse(directory / ISSUER_CRT, x509.load_pem_x509_certificate)
    issuer_key = _parse(directory / ISSUER_KEY, load_key_pem)
    bundle = _parse(directory / BUNDLE, load_certs_pem)
    token_key = _read(directory / TOKEN_KEY)
    m = Material(
        settings=settings,
        anchor=anchor,
        anchor_key=anchor_key,
        issuer=issuer,
        issuer_key=issuer_key,
        bundle=tuple(bundle),
        token_key=token_key.strip(),
    )
    if fingerprint(m.anchor) not in {fingerprint(a) for a in m.bundle}:
        raise StoreError(f"{directory / BUNDLE}: does not hold anchor.crt")
    if m.anchor.public_key() != m.anchor_key.public_key():
        raise StoreError(f"{directory / ANCHOR_KEY}: does not belong to anchor.crt")
    check_issuer(m.issuer, m.issuer_key, m.bundle)
    if len(m.token_key) < 32:
        raise StoreError(f"{directory / TOKEN_KEY}: shorter than 32 bytes")
    return m


def _lifetime(ms: int) -> dt.timedelta:
    return dt.timedelta(milliseconds=ms)


def _write_issuer(directory: Path, key: PrivateKey, cert: x509.Certificate) -> None:
    _write(directory / ISSUER_KEY, key_pem(key), private=True)
    _write(directory / ISSUER_CRT, cert_pem(cert))


def _write_anchor(directory: Path, key: PrivateKey, cert: x509.Certificate) -> None:
    _write(directory / ANCHOR_KEY, key_pem(key), private=True)
    _write(directory / ANCHOR_CRT, cert_pem(cert))


def _write_config(directory: Path, settings: IdentitySettings, **times: str) -> None:
    path = directory / CONFIG
    old: dict[str, object] = {}
    if path.exists():
        old = json.loads(path.read_bytes())
    body = {**old, **asdict(settings), **times}
    _write(path, (json.dumps(body, indent=2, sort_keys=True) + "\n").encode())


def init_store(directory: Path, settings: IdentitySettings, *, now: dt.datetime) -> Material:
    """A new anchor, issuer, bundle, token key and config in `directory` (made if missing,
    0700); refuses a directory that already holds an identity."""
    check_domain(settings.domain)
    if (directory / CONFIG).exists() or (directory / ANCHOR_CRT).exists():
        raise StoreError(f"{directory}: already initialised (rotate with mesh identity rotate)")
    if not directory.parent.is_dir():
        raise StoreError(f"{directory.parent}: no such directory")
    try:
        directory.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{directory}: {exc.strerror or exc}") from None
    anchor_key = new_key()
    anchor = make_anchor(
        anchor_key, domain=settings.domain, now=now, lifetime=_lifetime(settings.anchor_lifetime_ms)
    )
    issuer_key = new_key()
    issuer = make_issuer(
        issuer_key,
        anchor=anchor,
        anchor_key=anchor_key,
        domain=settings.domain,
        now=now,
        lifetime=_lifetime(settings.issuer_lifetime_ms),
    )
    _write(directory / TOKEN_KEY, secrets.token_hex(32).encode() + b"\n", private=True)
    _write_anchor(directory, anchor_key, anchor)
    _write_issuer(directory, issuer_key, issuer)
    _write(directory / BUNDLE, cert_pem(anchor))
    stamp = now.isoformat()
    _write_config(directory, settings, created_at=stamp, issuer_rotated_at=stamp)
    return load_material(directory)


def rotate_issuer(directory: Path, *, now: dt.datetime) -> Material:
    """A new issuer signed by the current anchor (step 2 of an anchor rotation, or on its
    own). Leaves of the old issuer stay valid: they carry their own issuer in their chain."""
    m = load_material(directory)
    key = new_key()
    cert = make_issuer(
        key,
        anchor=m.anchor,
        anchor_key=m.anchor_key,
        domain=m.settings.domain,
        now=now,
        lifetime=_lifetime(m.settings.issuer_lifetime_ms),
    )
    _write_issuer(directory, key, cert)
    _write_config(directory, m.settings, issuer_rotated_at=now.isoformat())
    return load_material(directory)


def rotate_anchor(directory: Path, *, now: dt.datetime) -> Material:
    """Step 1: a new anchor, trusted next to the old one; the issuer does not change yet."""
    m = load_material(directory)
    if len(m.bundle) > 1:
        raise StoreError(
            f"{directory / BUNDLE}: an anchor rotation is under way (2 anchors); finish it with"
            " mesh identity rotate --drop-old-anchor"
        )
    key = new_key()
    anchor = make_anchor(
        key, domain=m.settings.domain, now=now, lifetime=_lifetime(m.settings.anchor_lifetime_ms)
    )
    _write(directory / BUNDLE, certs_pem([*m.bundle, anchor]))  # trusted before it is current
    _write_anchor(directory, key, anchor)
    _write_config(directory, m.settings, anchor_rotated_at=now.isoformat())
    return load_material(directory)


def drop_old_anchor(directory: Path, *, now: dt.datetime) -> Material:
    """Step 3: the bundle keeps only the current anchor; refused while the issuer is still
    the old anchor's (its leaves would stop verifying)."""
    m = load_material(directory)
    if len(m.bundle) < 2:
        raise StoreError(f"{directory / BUNDLE}: holds one anchor; no rotation to finish")
    if not signed_by(m.issuer, m.anchor):
        raise StoreError(
            f"{directory / ISSUER_CRT}: still signed by the old anchor; run mesh identity rotate"
            " --issuer first and wait one leaf lifetime"
        )
    _write(directory / BUNDLE, cert_pem(m.anchor))
    _write_config(directory, m.settings, bundle_changed_at=now.isoformat())
    return load_material(directory)


def config_times(directory: Path) -> dict[str, str]:
    """The rotation times config.json records (`created_at`, `issuer_rotated_at`, ...)."""
    raw = json.loads(_read(directory / CONFIG))
    return {k: str(v) for k, v in raw.items() if k.endswith("_at")}


class AuthorityFiles:
    """The `Authority` of a directory, re-read when its files change (blocking calls)."""

    def __init__(self, directory: Path, *, clock: Clock = utc_now) -> None:
        self.directory = directory
        self._clock = clock
        self._seen: tuple[tuple[int, int, int], ...] | None = None
        self._authority: Authority | None = None
        self._material: Material | None = None
        self.error: str | None = None
        """Why the files last failed to load (None: the last load was good)."""

    def _signature(self) -> tuple[tuple[int, int, int], ...]:
        out = []
        for name in WATCHED:
            try:
                st = (self.directory / name).stat()
                out.append((st.st_ino, st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((0, 0, -1))
        return tuple(out)

    def refresh(self) -> Authority | None:
        """The current authority, reloaded first if a file changed; the last good one when
        the new files do not load (logged once per change); None if none ever loaded."""
        sig = self._signature()
        if sig != self._seen:
            self._seen = sig
            try:
                m = load_material(self.directory)
                self._authority = Authority.create(
                    issuer=m.issuer,
                    key=m.issuer_key,
                    anchors=m.bundle,
                    settings=m.settings,
                    now=self._clock(),
                )
                self._material = m
                self.error = None
                log.info(
                    "identity issuer loaded dir=%s issuer_sha256=%s anchors=%d not_after=%s",
                    self.directory,
                    self._authority.issuer_sha256,
                    len(m.bundle),
                    self._authority.chain_not_after.isoformat(),
                )
            except StoreError as exc:
                self.error = str(exc)
                kept = "keeping the last good one" if self._authority else "none to issue with"
                log.warning("identity issuer not loaded (%s): %s", kept, exc)
        return self._authority

    @property
    def token_key(self) -> bytes | None:
        return None if self._material is None else self._material.token_key
