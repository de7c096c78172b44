"""`mesh proxy-init`'s rules as text: rendering, the restore batch, flags (no root needed)."""

from __future__ import annotations

import io

import pytest

from turnout.cli.main import main
from turnout.cluster.capture.errors import BadFlag
from turnout.cluster.capture.rules import (
    INBOUND_CHAIN,
    OUTBOUND_CHAIN,
    CaptureConfig,
    dry_run_text,
    jump_rule,
    parse_port_ranges,
    parse_subnets,
    render_rules,
    restore_batch,
)


def mesh(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_default_rules_are_linkerds_with_the_loopback_rule_by_destination() -> None:
    assert render_rules(CaptureConfig()) == [
        f'-A {INBOUND_CHAIN} -p tcp -m multiport --dports 4191 -m comment --comment "turnout/skip-inbound-ports" -j RETURN',
        f'-A {INBOUND_CHAIN} -p tcp -m comment --comment "turnout/redirect-all-incoming-to-proxy-port" -j REDIRECT --to-ports 4143',
        f'-A {OUTBOUND_CHAIN} -m owner --uid-owner 2102 -m comment --comment "turnout/ignore-proxy-user-id" -j RETURN',
        f'-A {OUTBOUND_CHAIN} -d 127.0.0.0/8 -m comment --comment "turnout/ignore-loopback" -j RETURN',
        f'-A {OUTBOUND_CHAIN} -p tcp -m multiport --dports 53 -m comment --comment "turnout/skip-outbound-ports" -j RETURN',
        f'-A {OUTBOUND_CHAIN} -p tcp -m comment --comment "turnout/redirect-all-outgoing-to-proxy-port" -j REDIRECT --to-ports 4140',
    ]


def test_the_proxys_own_traffic_is_let_through_before_anything_is_redirected() -> None:
    rules = [r for r in render_rules(CaptureConfig(proxy_gid=3000)) if OUTBOUND_CHAIN in r]
    assert "--uid-owner 2102" in rules[0] and "--gid-owner 3000" in rules[1]
    assert "REDIRECT" in rules[-1]


def test_skip_ports_are_merged_sorted_and_split_at_fifteen_per_rule() -> None:
    ports = ",".join(str(p) for p in range(1000, 1040, 2)) + ",4190-4192,25"
    config = CaptureConfig(skip_inbound=parse_port_ranges("--skip-inbound-ports", ports))
    skips = [r for r in render_rules(config) if "skip-inbound-ports" in r]
    assert len(skips) == 2
    first = skips[0].split("--dports ")[1].split(" ")[0].split(",")
    assert first[0] == "25" and len(first) == 15
    assert skips[1].split("--dports ")[1].startswith("1028,")
    assert "4190:4192" in skips[1]  # the admin port 4191 is inside the given range


def test_skip_subnets_bypass_both_ways() -> None:
    config = CaptureConfig(skip_subnets=parse_subnets("--skip-subnets", "10.1.2.3/16,192.0.2.7"))
    rules = render_rules(config)
    assert any(r.startswith(f"-A {INBOUND_CHAIN} -s 10.1.0.0/16 ") for r in rules)
    assert any(r.startswith(f"-A {OUTBOUND_CHAIN} -d 192.0.2.7/32 ") for r in rules)


@pytest.mark.parametrize(
    ("flag", "text", "message"),
    [
        pytest.param("--skip-inbound-ports", "25,x", "want ports like", id="not-a-port"),
        pytest.param("--skip-inbound-ports", "0", "port range out of 1..65535", id="port-zero"),
        pytest.param(
            "--skip-outbound-ports", "90-80", "port range out of 1..65535", id="backwards-range"
        ),
    ],
)
def test_bad_ports_name_the_flag_and_the_part(flag: str, text: str, message: str) -> None:
    with pytest.raises(BadFlag, match=f"^{flag}: {message}"):
        parse_port_ranges(flag, text)


def test_bad_subnets_name_the_flag() -> None:
    with pytest.raises(BadFlag, match=r"^--skip-subnets: not a CIDR: 'ten'"):
        parse_subnets("--skip-subnets", "ten")
    with pytest.raises(BadFlag, match="IPv6"):
        parse_subnets("--skip-subnets", "fd00::/8")


def test_restore_batch_adds_a_missing_jump_and_drops_extra_copies() -> None:
    config = CaptureConfig()
    fresh = restore_batch(config, "")
    assert f":{INBOUND_CHAIN} - [0:0]" in fresh and fresh.endswith("COMMIT\n")
    assert jump_rule("PREROUTING", INBOUND_CHAIN) in fresh
    saved = "\n".join(
        [jump_rule("PREROUTING", INBOUND_CHAIN)] * 2 + [jump_rule("OUTPUT", OUTBOUND_CHAIN)]
    )
    again = restore_batch(config, saved)
    assert jump_rule("OUTPUT", OUTBOUND_CHAIN) not in again  # already there once
    assert again.count("-D PREROUTING -m comment") == 1  # the second copy goes


def test_dry_run_prints_the_rules_and_touches_nothing() -> None:
    code, out, err = mesh("proxy-init", "--dry-run", "--skip-outbound-ports", "5432")
    assert (code, err) == (0, "")
    assert out == dry_run_text(CaptureConfig(skip_outbound=((5432, 5432),))) and out.startswith(
        "*nat\n"
    )
    assert "--dports 53,5432" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--inbound-port", "0"], "--inbound-port: must be >= 1", id="port-zero"),
        pytest.param(["--proxy-uid", "proxy"], "numeric id", id="uid-name"),
        pytest.param(["--skip-subnets", "x"], "--skip-subnets: not a CIDR", id="subnet"),
        pytest.param(["--iptables", "nft"], "invalid choice", id="binary"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(argv: list[str], message: str) -> None:
    code, out, err = mesh("proxy-init", "--dry-run", *argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_missing_iptables_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("shutil.which", lambda *a, **k: None)
    code, out, err = mesh("proxy-init", "--iptables", "iptables-legacy")
    assert (code, out) == (2, "")
    assert err == (
        "error: iptables-legacy-save not found on PATH (install iptables: apt-get install"
        " iptables)\n"
    )
