"""`mesh identity init|rotate|token|status`: the mesh CA's directory, from the command line.

```
mesh identity init --dir DIR [--domain D] [--lifetime 24h]   store.init_store   anchor, issuer,
                   [--clock-skew 20s]                                          bundle, token key
mesh identity rotate --dir DIR --issuer                       store.rotate_issuer
                               --anchor                       store.rotate_anchor    (step 1)
                               --drop-old-anchor              store.drop_old_anchor  (step 3)
mesh identity token --dir DIR -n NS --service-account SA [--ttl 24h]
                                                              tokens.issue_join_token -> stdout
mesh identity status --dir DIR                                what is trusted, what expires
```

A running `mesh serve --identity-dir DIR` picks every change up at its next Certify call;
nothing restarts. Errors (a missing or uninitialised directory, one already initialised, a
rotation out of order, a bad duration or name) are one line and exit 2 (`main`); `status`
exits 1 when a certificate expires within 60 days, as `linkerd check` warns. Timing advice
about a rotation (proxies renew at 70% of a leaf's life) goes to stderr as ``warning:``.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from cryptography import x509

from turnout.cli.errors import CommandError, UsageError
from turnout.cli.output import EXIT_FAILED, EXIT_OK
from turnout.engine.identity.certs import fingerprint, signed_by
from turnout.engine.identity.clock import utc_now
from turnout.engine.identity.errors import StoreError
from turnout.engine.identity.health import CaCerts, expiring
from turnout.engine.identity.names import check_domain, check_service_account, identity_name
from turnout.engine.identity.settings import IdentitySettings
from turnout.engine.identity.store import (
    Material,
    config_times,
    drop_old_anchor,
    init_store,
    load_material,
    rotate_anchor,
    rotate_issuer,
)
from turnout.engine.identity.tokens import issue_join_token


def _describe(label: str, cert: x509.Certificate) -> str:
    return (
        f"{label:7s} sha256={fingerprint(cert)[:16]} subject={cert.subject.rfc4514_string()}"
        f" not_after={cert.not_valid_after_utc.isoformat()}"
    )


def run_identity_init(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        domain = check_domain(args.domain)
    except ValueError as exc:
        raise UsageError(f"--domain: {exc}") from None
    settings = IdentitySettings(
        domain=domain, leaf_lifetime_ms=args.lifetime, clock_skew_ms=args.clock_skew
    )
    m = _run(lambda: init_store(Path(args.dir), settings, now=utc_now()))
    print(
        f"identity initialised in {args.dir}: trust domain {domain},"
        f" leaves of {_hours(args.lifetime)}",
        file=out,
    )
    print(_describe("anchor", m.anchor), file=out)
    print(_describe("issuer", m.issuer), file=out)
    print(f"serve it: mesh serve --dir MANIFESTS --identity-dir {args.dir}", file=out)
    return EXIT_OK


def _hours(ms: int) -> str:
    s = ms // 1000
    return f"{s // 3600}h" if s % 3600 == 0 else f"{s}s"


def _run(fn: Callable[[], Material]) -> Material:
    """`fn()`, its `StoreError` as the one line the user sees (exit 2)."""
    try:
        return fn()
    except StoreError as exc:
        raise CommandError(str(exc)) from None


def run_identity_rotate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    directory = Path(args.dir)
    now = utc_now()
    before = _run(lambda: load_material(directory))
    lifetime = _hours(before.settings.leaf_lifetime_ms)
    if args.issuer:
        m = _run(lambda: rotate_issuer(directory, now=now))
        print(_describe("issuer", m.issuer), file=out)
        if len(m.bundle) > 1:
            print(
                f"step 2 of 3 done: the new issuer is the new anchor's; once every leaf was"
                f" re-issued (one leaf lifetime, {lifetime}), run mesh identity rotate"
                f" --dir {args.dir} --drop-old-anchor",
                file=out,
            )
            _warn_if_recent(err, config_times(directory).get("anchor_rotated_at"), before, now)
        else:
            print("leaves of the old issuer stay valid until they expire", file=out)
    elif args.anchor:
        m = _run(lambda: rotate_anchor(directory, now=now))
        print(_describe("anchor", m.anchor), file=out)
        print(
            f"step 1 of 3 done: the bundle trusts both anchors; once every proxy renewed (one"
            f" leaf lifetime, {lifetime}), run mesh identity rotate --dir {args.dir} --issuer",
            file=out,
        )
    else:
        m = _run(lambda: drop_old_anchor(directory, now=now))
        print(_describe("anchor", m.anchor), file=out)
        print("step 3 of 3 done: the bundle trusts only the new anchor", file=out)
        _warn_if_recent(err, config_times(directory).get("issuer_rotated_at"), before, now)
    return EXIT_OK


def _warn_if_recent(err: TextIO, stamp: str | None, m: Material, now: dt.datetime) -> None:
    """Warn when the previous step is younger than one leaf lifetime: some proxies may not
    have renewed since (they renew at 70% of a leaf's life)."""
    if stamp is None:
        return
    since = now - dt.datetime.fromisoformat(stamp)
    life = dt.timedelta(milliseconds=m.settings.leaf_lifetime_ms)
    if since < life:
        wait = (life - since).total_seconds()
        print(
            f"warning: the previous step was {int(since.total_seconds())}s ago; proxies that"
            f" have not renewed since (up to {int(wait)}s more) may refuse peers",
            file=err,
        )


def run_identity_token(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        sa = check_service_account(args.namespace, args.service_account)
    except ValueError as exc:
        raise UsageError(f"-n/--service-account: {exc}") from None
    m = _run(lambda: load_material(Path(args.dir)))
    token = issue_join_token(
        m.token_key, sa, now=utc_now(), ttl=dt.timedelta(milliseconds=args.ttl)
    )
    print(token, file=out)
    print(
        f"join token for {identity_name(sa, m.settings.domain)}, valid {_hours(args.ttl)}",
        file=err,
    )
    return EXIT_OK


def run_identity_status(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    m = _run(lambda: load_material(Path(args.dir)))
    now = utc_now()
    s = m.settings
    print(
        f"trust domain {s.domain}, leaves of {_hours(s.leaf_lifetime_ms)},"
        f" skew {s.clock_skew_ms // 1000}s",
        file=out,
    )
    for anchor in m.bundle:
        mark = "anchor*" if fingerprint(anchor) == fingerprint(m.anchor) else "anchor"
        print(_describe(mark, anchor), file=out)
    print(_describe("issuer", m.issuer), file=out)
    signer = next((a for a in m.bundle if signed_by(m.issuer, a)), None)
    if len(m.bundle) > 1:
        step = 2 if signer is not None and fingerprint(signer) == fingerprint(m.anchor) else 1
        nxt = "--drop-old-anchor" if step == 2 else "--issuer"
        print(f"anchor rotation: step {step} of 3 done; next: rotate {nxt}", file=out)
    # The same 60-day rule as `mesh check`'s identity checks (`engine.identity.health`).
    soon = expiring(CaCerts(anchors=m.bundle, issuer=m.issuer), now=now)
    for line in soon:
        print(f"× {line}", file=out)
    return EXIT_FAILED if soon else EXIT_OK


def run_identity_agent(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`mesh identity agent`: the workload's certificate as files (`proxy/identity/agent.py`)."""
    from turnout.proxy.identity.agent import CA_FILE, CERT_FILE, KEY_FILE, Agent, run_agent
    from turnout.proxy.identity.client import CertifyError

    token = Path(args.identity_token_file)
    if not token.is_file():
        raise UsageError(f"--identity-token-file {token}: no such file")
    try:
        agent = Agent(args.identity, target=args.addr, token_file=token, out=Path(args.out))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    files = ", ".join(str(Path(args.out) / f) for f in (CERT_FILE, KEY_FILE, CA_FILE))
    print(f"identity agent {args.identity}: {files}", file=out)
    out.flush()
    try:
        run_agent(agent, once=args.once)
    except CertifyError as exc:
        raise CommandError(f"identity agent: {exc}") from None
    except KeyboardInterrupt:
        pass
    return EXIT_OK
