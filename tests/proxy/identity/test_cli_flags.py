"""`mesh proxy --identity` and its companions: each mistake is one line and exit 2."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.proxy.identity.kit import WEB
from turnout.cli.main import main


def run(*args: str) -> tuple[int, str]:
    err = io.StringIO()
    code = main(
        ["proxy", "--xds", "127.0.0.1:1", "--outbound", ":0", *args],
        stdout=io.StringIO(),
        stderr=err,
    )
    return code, err.getvalue()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["--identity", "web.shop.svc.cluster.local", "--identity-token-file", "x"],
            "not an identity name",
        ),
        (["--identity", WEB], "--identity needs --identity-token-file"),
        (
            ["--identity", WEB, "--identity-token-file", "/nonexistent/t"],
            "/nonexistent/t: no such file",
        ),
        (["--identity-addr", "127.0.0.1:1"], "need --identity NAME"),
        (["--require-mtls"], "--require-mtls needs --identity NAME"),
    ],
)
def test_identity_flag_mistakes_are_one_line_and_exit_2(args: list[str], says: str) -> None:
    code, err = run(*args)
    assert code == 2
    assert says in err and err.count("\n") == 1, err


def test_without_xds_the_identity_address_must_be_given(tmp_path: Path) -> None:
    token = tmp_path / "t"
    token.write_text("x")
    m = tmp_path / "m.yaml"
    m.write_text("")
    err = io.StringIO()
    code = main(
        [
            "proxy",
            "-f",
            str(m),
            "--outbound",
            ":0",
            "--identity",
            WEB,
            "--identity-token-file",
            str(token),
        ],
        stdout=io.StringIO(),
        stderr=err,
    )
    assert code == 2 and "--identity-addr" in err.getvalue()
