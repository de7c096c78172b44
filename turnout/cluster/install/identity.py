"""The mesh CA's Secret: the files of a `mesh identity init` directory, as `mesh serve
--identity-dir` reads them.

```
--identity-dir DIR ──load_material (checked)──┐
(none) ──init_store in a temp dir ────────────┴──> {config.json, anchor.crt, anchor.key,
         trust domain, leaf lifetime, clock skew      issuer.crt, issuer.key, bundle.pem,
         from values.identity                          token.key} ──> Secret turnout-identity
```

The keys are exactly `FILES`, the files `engine.identity.store.load_material` reads, so the
mounted Secret is an identity directory. Without ``--identity-dir`` every run makes a new
trust anchor: keep a directory (`mesh identity init --dir ca`, then `--identity-dir ca`)
to re-install or upgrade without restarting every proxy. Deliberately not here: rotation
(`mesh identity rotate` on the directory, then `mesh install` again).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from turnout.cluster import names
from turnout.cluster.install.errors import InstallError
from turnout.cluster.install.labels import metadata
from turnout.cluster.install.values import Values, duration_ms
from turnout.cluster.install.webhook import b64
from turnout.engine.identity.clock import utc_now
from turnout.engine.identity.errors import StoreError
from turnout.engine.identity.settings import IdentitySettings
from turnout.engine.identity.store import (
    ANCHOR_CRT,
    ANCHOR_KEY,
    BUNDLE,
    CONFIG,
    ISSUER_CRT,
    ISSUER_KEY,
    TOKEN_KEY,
    init_store,
    load_material,
)

Raw = dict[str, Any]

FILES = (CONFIG, ANCHOR_CRT, ANCHOR_KEY, ISSUER_CRT, ISSUER_KEY, BUNDLE, TOKEN_KEY)
"""What `mesh serve --identity-dir` reads: the Secret's keys."""


def read_identity_dir(directory: Path) -> dict[str, bytes]:
    """The files of an existing identity directory, checked to fit together first."""
    try:
        load_material(directory)
        return {name: (directory / name).read_bytes() for name in FILES}
    except StoreError as exc:
        raise InstallError(f"--identity-dir: {exc}") from None
    except OSError as exc:
        raise InstallError(f"--identity-dir {directory}: {exc.strerror or exc}") from None


def new_identity(values: Values) -> dict[str, bytes]:
    """A fresh CA (`mesh identity init`) with the values' trust domain and lifetimes."""
    settings = IdentitySettings(
        domain=values.identity.trust_domain,
        leaf_lifetime_ms=duration_ms(values.identity.leaf_lifetime),
        clock_skew_ms=duration_ms(values.identity.clock_skew),
    )
    with tempfile.TemporaryDirectory(prefix="turnout-identity-") as tmp:
        directory = Path(tmp) / "identity"
        try:
            init_store(directory, settings, now=utc_now())
        except StoreError as exc:
            raise InstallError(f"identity: {exc}") from None
        return {name: (directory / name).read_bytes() for name in FILES}


def identity_secret(values: Values, files: dict[str, bytes]) -> Raw:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(names.IDENTITY_SECRET, values.namespace, "identity"),
        "type": "Opaque",
        "data": {name: b64(files[name]) for name in FILES},
    }
