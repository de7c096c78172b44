"""`mesh identity init|rotate|token|status`: what they print, their one-line errors and exit
codes (0 ok, 1 a certificate expiring within 60 days, 2 bad input)."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest

from turnout.cli.main import main
from turnout.engine.identity.errors import TokenInvalid
from turnout.engine.identity.names import ServiceAccount
from turnout.engine.identity.store import load_material
from turnout.engine.identity.tokens import verify_join_token


def mesh(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_init_creates_the_ca_and_says_how_to_serve_it(tmp_path: Path) -> None:
    d = str(tmp_path / "id")
    code, out, err = mesh(
        "identity", "init", "--dir", d, "--domain", "mesh.example", "--lifetime", "90m"
    )
    assert (code, err) == (0, "")
    assert (
        out.splitlines()[0]
        == f"identity initialised in {d}: trust domain mesh.example, leaves of 5400s"
    )
    assert out.splitlines()[1].startswith("anchor  sha256=")
    assert "subject=CN=root.identity.mesh.example" in out
    assert f"--identity-dir {d}" in out
    m = load_material(Path(d))
    assert (m.settings.domain, m.settings.leaf_lifetime_ms) == ("mesh.example", 5_400_000)
    assert m.settings.clock_skew_ms == 20_000


def test_init_takes_a_clock_skew_and_zero_means_none(tmp_path: Path) -> None:
    d = str(tmp_path / "id")
    code, _, err = mesh("identity", "init", "--dir", d, "--lifetime", "60s", "--clock-skew", "0")
    assert (code, err) == (0, "")
    m = load_material(Path(d))
    assert (m.settings.leaf_lifetime_ms, m.settings.clock_skew_ms) == (60_000, 0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            ("init", "--lifetime", "1day"),
            "error: mesh identity init: argument --lifetime: want a duration like 60s, 1m30s or"
            " 500ms, got '1day'; see 'mesh identity init --help'",
            id="bad-duration",
        ),
        pytest.param(
            ("init", "--lifetime", "500ms"),
            "error: mesh identity init: argument --lifetime: must be at least 1s, got '500ms';"
            " see 'mesh identity init --help'",
            id="too-short",
        ),
        pytest.param(
            ("init", "--domain", "Bad_Domain"),
            "error: --domain: trust domain 'Bad_Domain' is not a DNS name (RFC 1123, lowercase)",
            id="bad-domain",
        ),
        pytest.param(
            ("rotate",),
            "error: mesh identity rotate: one of the arguments --issuer --anchor"
            " --drop-old-anchor is required; see 'mesh identity rotate --help'",
            id="rotate-what",
        ),
        pytest.param(
            ("token", "-n", "Shop", "--service-account", "web"),
            "error: -n/--service-account: namespace 'Shop' is not a DNS label (RFC 1123)",
            id="bad-namespace",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, argv: tuple[str, ...], message: str
) -> None:
    sub, *rest = argv
    code, out, err = mesh("identity", sub, "--dir", str(tmp_path / "id"), *rest)
    assert (code, out, err) == (2, "", message + "\n")


def test_a_missing_or_initialised_directory_is_one_line_and_exit_2(tmp_path: Path) -> None:
    d = tmp_path / "id"
    code, _, err = mesh("identity", "rotate", "--dir", str(d), "--issuer")
    assert (code, err) == (2, f"error: {d}: not a directory\n")
    code, _, err = mesh(
        "identity", "token", "--dir", str(tmp_path), "-n", "a", "--service-account", "b"
    )
    assert (code, err) == (
        2,
        f"error: {tmp_path}/config.json: missing; is this an identity directory (mesh identity init)?\n",
    )
    assert mesh("identity", "init", "--dir", str(d))[0] == 0
    code, _, err = mesh("identity", "init", "--dir", str(d))
    assert (code, err) == (
        2,
        f"error: {d}: already initialised (rotate with mesh identity rotate)\n",
    )
    code, _, err = mesh("identity", "init", "--dir", str(tmp_path / "a" / "b"))
    assert (code, err) == (2, f"error: {tmp_path / 'a'}: no such directory\n")


def test_token_prints_a_join_token_bound_to_the_account_and_its_ttl(tmp_path: Path) -> None:
    d = tmp_path / "id"
    mesh("identity", "init", "--dir", str(d))
    code, out, err = mesh(
        "identity",
        "token",
        "--dir",
        str(d),
        "-n",
        "shop",
        "--service-account",
        "web",
        "--ttl",
        "1h",
    )
    assert code == 0
    assert err == "join token for web.shop.serviceaccount.identity.cluster.local, valid 1h\n"
    token = out.strip()
    key = load_material(d).token_key
    now = dt.datetime.now(dt.UTC)
    assert verify_join_token(key, token, now=now) == ServiceAccount(namespace="shop", name="web")
    with pytest.raises(TokenInvalid, match="expired"):
        verify_join_token(key, token, now=now + dt.timedelta(hours=1, seconds=5))


def test_rotate_walks_the_three_anchor_steps_and_status_shows_them(tmp_path: Path) -> None:
    d = str(tmp_path / "id")
    mesh("identity", "init", "--dir", d)
    code, out, err = mesh("identity", "rotate", "--dir", d, "--drop-old-anchor")
    assert (code, err) == (2, f"error: {d}/bundle.pem: holds one anchor; no rotation to finish\n")

    code, out, err = mesh("identity", "rotate", "--dir", d, "--anchor")
    assert code == 0 and "step 1 of 3 done" in out and f"rotate --dir {d} --issuer" in out
    code, out, _ = mesh("identity", "status", "--dir", d)
    assert (
        code == 0 and out.count("anchor") >= 2 and "step 1 of 3 done; next: rotate --issuer" in out
    )

    code, out, err = mesh("identity", "rotate", "--dir", d, "--issuer")
    assert code == 0 and "step 2 of 3 done" in out
    assert err.startswith("warning: the previous step was 0s ago; proxies that have not renewed")
    code, out, _ = mesh("identity", "status", "--dir", d)
    assert "step 2 of 3 done; next: rotate --drop-old-anchor" in out

    code, out, err = mesh("identity", "rotate", "--dir", d, "--drop-old-anchor")
    assert code == 0 and "step 3 of 3 done: the bundle trusts only the new anchor" in out
    assert err.startswith("warning: the previous step was 0s ago")
    code, out, _ = mesh("identity", "status", "--dir", d)
    assert code == 0 and "rotation" not in out
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["anchor*", "issuer"]


def test_status_exits_1_when_the_issuer_expires_within_60_days(tmp_path: Path) -> None:
    from turnout.engine.identity.settings import IdentitySettings
    from turnout.engine.identity.store import init_store

    d = tmp_path / "id"
    init_store(
        d, IdentitySettings(issuer_lifetime_ms=30 * 24 * 3_600_000), now=dt.datetime.now(dt.UTC)
    )
    code, out, _ = mesh("identity", "status", "--dir", str(d))
    assert code == 1
    assert out.splitlines()[-1].startswith("× issuer expires ")


def test_serve_with_a_bad_identity_dir_is_one_line_and_exit_2(tmp_path: Path) -> None:
    d = tmp_path / "id"
    d.mkdir()
    argv = ("serve", "--dir", str(tmp_path), "--identity-dir", str(d), "--xds", "127.0.0.1:0")
    code, out, err = mesh(*argv)
    assert (code, out) == (2, "")
    missing = f"{d}/config.json: missing; is this an identity directory (mesh identity init)?"
    assert err == f"error: --identity-dir: {missing}\n"
