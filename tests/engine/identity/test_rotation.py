"""The CA directory: its files, and rotations a running service picks up without a
restart. An old leaf keeps verifying while its anchor is in the bundle; after the old anchor
is dropped only leaves of the new chain verify."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509

from tests.engine.identity.identity_kit import T0, WEB, FakeClock, init_dir, mk_csr, verifies
from turnout.engine.identity.authority import Leaf
from turnout.engine.identity.errors import IssuerUnavailable, StoreError
from turnout.engine.identity.names import ServiceAccount
from turnout.engine.identity.service import IdentityService
from turnout.engine.identity.settings import IdentitySettings
from turnout.engine.identity.store import (
    AuthorityFiles,
    drop_old_anchor,
    init_store,
    load_material,
    rotate_anchor,
    rotate_issuer,
)
from turnout.engine.identity.tokens import JoinTokenVerifier, issue_join_token

SA = ServiceAccount(namespace="shop", name="web")


def test_init_writes_the_layout_with_private_keys_0600(tmp_path: Path) -> None:
    d = init_dir(tmp_path / "id")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in d.iterdir()}
    assert modes == {
        "anchor.crt": 0o644,
        "anchor.key": 0o600,
        "issuer.crt": 0o644,
        "issuer.key": 0o600,
        "bundle.pem": 0o644,
        "config.json": 0o644,
        "token.key": 0o600,
    }
    m = load_material(d)
    assert [a.subject.rfc4514_string() for a in m.bundle] == ["CN=root.identity.cluster.local"]
    bc = m.issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert (bc.ca, bc.path_length) == (True, 0)
    bc = m.anchor.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert (bc.ca, bc.path_length) == (True, 1)
    ku = m.issuer.extensions.get_extension_for_class(x509.KeyUsage).value
    assert (ku.key_cert_sign, ku.crl_sign, ku.digital_signature) == (True, True, False)


def test_init_refuses_an_initialised_directory_and_a_missing_parent(tmp_path: Path) -> None:
    d = init_dir(tmp_path / "id")
    with pytest.raises(StoreError, match="already initialised"):
        init_store(d, IdentitySettings(), now=T0)
    with pytest.raises(StoreError, match="no such directory"):
        init_store(tmp_path / "nope" / "id", IdentitySettings(), now=T0)
    with pytest.raises(StoreError, match=r"nothere: not a directory"):
        rotate_issuer(tmp_path / "nothere", now=T0)


def test_a_broken_file_is_named(tmp_path: Path) -> None:
    d = init_dir(tmp_path / "id")
    (d / "issuer.key").write_bytes(b"garbage")
    with pytest.raises(StoreError, match=r"issuer.key: "):
        load_material(d)
    (d / "issuer.key").unlink()
    with pytest.raises(StoreError, match=r"issuer.key: missing"):
        load_material(d)


class Running:
    """A service on the directory, as `mesh serve` runs it, and a way to get leaves."""

    def __init__(self, d: Path) -> None:
        self.dir = d
        self.clock = FakeClock()
        key = load_material(d).token_key
        self.key = key
        self.service = IdentityService(
            AuthorityFiles(d, clock=self.clock),
            JoinTokenVerifier(key, clock=self.clock),
            clock=self.clock,
            reload_interval_ms=0,
        )

    async def leaf(self) -> Leaf:
        token = issue_join_token(self.key, SA, now=self.clock(), ttl=dt.timedelta(hours=1))
        return await self.service.certify(identity=WEB, token=token.encode(), csr=mk_csr())


def ok(leaf: Leaf, bundle: bytes) -> bool:
    return verifies(leaf.der, leaf.chain, bundle, at=T0 + dt.timedelta(minutes=5))


async def test_issuer_rotation_is_picked_up_and_old_leaves_stay_valid(tmp_path: Path) -> None:
    run = Running(init_dir(tmp_path / "id"))
    old = await run.leaf()
    rotate_issuer(run.dir, now=T0)
    new = await run.leaf()
    assert new.chain != old.chain, "the running service signs with the new issuer"
    assert new.bundle_pem == old.bundle_pem
    assert ok(old, new.bundle_pem) and ok(new, new.bundle_pem)


async def test_anchor_rotation_in_three_steps_without_a_restart(tmp_path: Path) -> None:
    run = Running(init_dir(tmp_path / "id"))
    before = await run.leaf()

    rotate_anchor(run.dir, now=T0)  # step 1: both anchors trusted, old issuer still signs
    step1 = await run.leaf()
    assert len(x509.load_pem_x509_certificates(step1.bundle_pem)) == 2
    assert step1.chain == before.chain
    assert ok(before, step1.bundle_pem)

    with pytest.raises(StoreError, match="still signed by the old anchor"):
        drop_old_anchor(run.dir, now=T0)

    rotate_issuer(run.dir, now=T0)  # step 2: the new anchor's issuer signs
    step2 = await run.leaf()
    assert step2.chain != before.chain
    assert ok(before, step2.bundle_pem) and ok(step2, step2.bundle_pem)
    assert not ok(step2, before.bundle_pem), "the old bundle does not trust the new chain"

    drop_old_anchor(run.dir, now=T0)  # step 3: only the new anchor
    after = await run.leaf()
    assert len(x509.load_pem_x509_certificates(after.bundle_pem)) == 1
    assert ok(step2, after.bundle_pem) and ok(after, after.bundle_pem)
    assert not ok(before, after.bundle_pem), "leaves of the old anchor no longer verify"
    assert not ok(step1, after.bundle_pem)

    with pytest.raises(StoreError, match="no rotation to finish"):
        drop_old_anchor(run.dir, now=T0)


def test_a_second_anchor_rotation_waits_for_the_first(tmp_path: Path) -> None:
    d = init_dir(tmp_path / "id")
    rotate_anchor(d, now=T0)
    with pytest.raises(StoreError, match="anchor rotation is under way"):
        rotate_anchor(d, now=T0)


async def test_files_that_do_not_fit_keep_the_last_good_issuer(tmp_path: Path) -> None:
    run = Running(init_dir(tmp_path / "id"))
    good = await run.leaf()
    other = init_dir(tmp_path / "other")
    (run.dir / "issuer.key").write_bytes((other / "issuer.key").read_bytes())  # half a rotation
    kept = await run.leaf()
    assert kept.chain == good.chain
    assert run.service.files.error is not None
    assert "issuer.key: does not belong to issuer.crt" in run.service.files.error
    (run.dir / "issuer.crt").write_bytes((other / "issuer.crt").read_bytes())
    with pytest.raises(StoreError):
        load_material(run.dir)  # other's issuer is not signed by our anchor
    assert (await run.leaf()).chain == good.chain


async def test_a_service_whose_files_never_loaded_is_unavailable(tmp_path: Path) -> None:
    d = init_dir(tmp_path / "id")
    run = Running(d)
    (d / "bundle.pem").write_bytes(b"")
    with pytest.raises(IssuerUnavailable, match=r"no valid issuer loaded: .*bundle\.pem"):
        await run.leaf()
