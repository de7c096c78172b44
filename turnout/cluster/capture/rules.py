"""The capture rules, as `iptables-save` lines: what `mesh proxy-init` writes into the nat table.

```
PREROUTING ─► TURNOUT-PROXY-INIT-INBOUND      (linkerd: PROXY_INIT_REDIRECT)
                skip inbound ports (the proxy's admin port always) ─ RETURN
                source in a skip subnet ─ RETURN
                tcp ─ REDIRECT --to-ports 4143 (the proxy's inbound port)
OUTPUT ─────► TURNOUT-PROXY-INIT-OUTBOUND     (linkerd: PROXY_INIT_OUTPUT)
                owner uid (and gid) of the proxy ─ RETURN     its own traffic, or it loops
                destination 127.0.0.0/8 ─ RETURN              the app's loopback calls
                skip outbound ports (DNS, 53, always) ─ RETURN
                destination in a skip subnet ─ RETURN
                tcp ─ REDIRECT --to-ports 4140 (the proxy's outbound port)
```

Only TCP is redirected: UDP (DNS among it) is never touched. The loopback rule is by
destination, not Linkerd's ``-o lo``: a pod calling itself through its own IP (or, in a
network namespace where the Service addresses are local ones, any call) leaves through `lo`
too, and must still reach the proxy; the proxy's own connections are let through by the
owner match before it, so nothing loops. The proxy then reads the connection's original
destination (``SO_ORIGINAL_DST``, docs/capture.md).

Deliberately not here: running iptables (`apply.py`), IPv6 (ip6tables), and Linkerd's
"redirect listed ports only" mode.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from turnout.cluster import names
from turnout.cluster.capture.errors import BadFlag

INBOUND_CHAIN = "TURNOUT-PROXY-INIT-INBOUND"
OUTBOUND_CHAIN = "TURNOUT-PROXY-INIT-OUTBOUND"
JUMPS = (("PREROUTING", INBOUND_CHAIN), ("OUTPUT", OUTBOUND_CHAIN))
"""The built-in chain and the chain of ours it jumps to, one jump each."""
DNS_PORT = 53
LOOPBACK = "127.0.0.0/8"
MULTIPORT_LIMIT = 15
"""Ports one ``-m multiport`` match may name (a range counts two), as iptables allows."""
COMMENT_PREFIX = "turnout/"

PortRange = tuple[int, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptureConfig:
    """What `mesh proxy-init`'s flags say."""

    inbound_port: int = names.PROXY_INBOUND_PORT
    """Where inbound TCP is redirected (the proxy's ``--inbound``)."""
    outbound_port: int = names.PROXY_OUTBOUND_PORT
    """Where outbound TCP is redirected (the proxy's ``--outbound``)."""
    proxy_uid: int = names.PROXY_UID
    """The proxy's user: its own connections are not captured."""
    proxy_gid: int | None = None
    """Also let this group's traffic through (None: the uid alone decides)."""
    admin_port: int = names.PROXY_ADMIN_PORT
    """Never captured inbound: probes and scrapes reach the proxy's admin directly."""
    skip_inbound: tuple[PortRange, ...] = ()
    skip_outbound: tuple[PortRange, ...] = ()
    skip_subnets: tuple[str, ...] = ()
    """CIDRs: inbound from them and outbound to them bypass the proxy."""


def parse_port_ranges(flag: str, text: str) -> tuple[PortRange, ...]:
    """``4191,25,4000-4100`` -> ((4191, 4191), (25, 25), (4000, 4100)); `BadFlag` names
    the flag and the part."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, dash, last = part.partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise BadFlag(f"{flag}: want ports like 25,4000-4100, got {part!r}")
        lo, hi = int(first), int(last or first)
        if not 0 < lo <= hi <= 65535:
            raise BadFlag(f"{flag}: port range out of 1..65535: {part!r}")
        out.append((lo, hi))
    return tuple(out)


def parse_subnets(flag: str, text: str) -> tuple[str, ...]:
    """``10.0.0.0/8,192.168.1.1`` -> the networks in canonical form (IPv4 only)."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            net = ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise BadFlag(f"{flag}: not a CIDR: {part!r}") from None
        if net.version != 4:
            raise BadFlag(f"{flag}: {part!r} is IPv6; the rules are IPv4 (iptables)")
        out.append(str(net))
    return tuple(out)


def render_rules(config: CaptureConfig) -> list[str]:
    """The ``-A`` lines of our two chains, in order (see the module docstring)."""
    c = config
    inbound: list[str] = []
    skip_in = _merged(((c.admin_port, c.admin_port), *c.skip_inbound))
    inbound += _skip_ports(INBOUND_CHAIN, skip_in, "skip-inbound-ports")
    inbound += [
        _rule(INBOUND_CHAIN, f"-s {net}", "RETURN", f"skip-subnet-{net}") for net in c.skip_subnets
    ]
    inbound.append(
        _rule(
            INBOUND_CHAIN,
            "-p tcp",
            f"REDIRECT --to-ports {c.inbound_port}",
            "redirect-all-incoming-to-proxy-port",
        )
    )
    owner = f"-m owner --uid-owner {c.proxy_uid}"
    outbound = [_rule(OUTBOUND_CHAIN, owner, "RETURN", "ignore-proxy-user-id")]
    if c.proxy_gid is not None:
        owner = f"-m owner --gid-owner {c.proxy_gid}"
        outbound.append(_rule(OUTBOUND_CHAIN, owner, "RETURN", "ignore-proxy-group-id"))
    outbound.append(_rule(OUTBOUND_CHAIN, f"-d {LOOPBACK}", "RETURN", "ignore-loopback"))
    skip_out = _merged(((DNS_PORT, DNS_PORT), *c.skip_outbound))
    outbound += _skip_ports(OUTBOUND_CHAIN, skip_out, "skip-outbound-ports")
    outbound += [
        _rule(OUTBOUND_CHAIN, f"-d {net}", "RETURN", f"skip-subnet-{net}") for net in c.skip_subnets
    ]
    outbound.append(
        _rule(
            OUTBOUND_CHAIN,
            "-p tcp",
            f"REDIRECT --to-ports {c.outbound_port}",
            "redirect-all-outgoing-to-proxy-port",
        )
    )
    return inbound + outbound


def jump_rule(builtin: str, chain: str) -> str:
    return _rule(builtin, "", chain, f"install-{chain.lower()}")


def restore_batch(config: CaptureConfig, saved: str = "") -> str:
    """One ``iptables-restore --noflush`` batch that leaves the nat table with our chains
    holding exactly `render_rules(config)` and one jump into each.

    Declaring a user chain in a ``--noflush`` batch flushes it when it exists (creates it
    otherwise), so our chains are rebuilt whole; the built-in chains are not flushed, so
    the jumps are read from `saved` (``iptables-save -t nat``): one is added when there is
    none, extra copies are deleted. Running it twice gives the same table."""
    lines = ["*nat", f":{INBOUND_CHAIN} - [0:0]", f":{OUTBOUND_CHAIN} - [0:0]"]
    lines += render_rules(config)
    present = [line.strip() for line in saved.splitlines()]
    for builtin, chain in JUMPS:
        rule = jump_rule(builtin, chain)
        count = sum(1 for line in present if _is_jump(line, builtin, chain))
        if count == 0:
            lines.append(rule)
        lines += [_jump_delete(builtin, chain)] * max(0, count - 1)
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def dry_run_text(config: CaptureConfig) -> str:
    """What `--dry-run` prints: the nat table as `iptables-save` would show our part."""
    lines = ["*nat", f":{INBOUND_CHAIN} - [0:0]", f":{OUTBOUND_CHAIN} - [0:0]"]
    lines += [jump_rule(b, c) for b, c in JUMPS]
    lines += render_rules(config)
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def ours(saved: str) -> list[str]:
    """The lines of an `iptables-save` that are ours: our chains' rules and the jumps."""
    chains = (f"-A {INBOUND_CHAIN} ", f"-A {OUTBOUND_CHAIN} ")
    return [
        line
        for line in saved.splitlines()
        if line.startswith(chains) or any(_is_jump(line, b, c) for b, c in JUMPS)
    ]


# ----------------------------------------------------------------------------- helpers


def _rule(chain: str, match: str, target: str, comment: str) -> str:
    middle = f"{match} " if match else ""
    return f'-A {chain} {middle}-m comment --comment "{COMMENT_PREFIX}{comment}" -j {target}'


def _is_jump(line: str, builtin: str, chain: str) -> bool:
    return line.startswith(f"-A {builtin} ") and line.endswith(f" -j {chain}")


def _jump_delete(builtin: str, chain: str) -> str:
    return "-D" + jump_rule(builtin, chain)[2:]


def _merged(ranges: Iterable[PortRange]) -> list[PortRange]:
    """Sorted, overlapping and adjacent ranges joined, duplicates gone."""
    out: list[PortRange] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(hi, out[-1][1]))
        else:
            out.append((lo, hi))
    return out


def _skip_ports(chain: str, ranges: Sequence[PortRange], comment: str) -> list[str]:
    """RETURN rules for the ports, at most `MULTIPORT_LIMIT` ports named per rule."""
    rules: list[list[str]] = []
    group: list[str] = []
    used = 0
    for lo, hi in ranges:
        cost = 1 if lo == hi else 2
        if group and used + cost > MULTIPORT_LIMIT:
            rules.append(group)
            group, used = [], 0
        group.append(str(lo) if lo == hi else f"{lo}:{hi}")
        used += cost
    if group:
        rules.append(group)
    return [
        _rule(chain, f"-p tcp -m multiport --dports {','.join(g)}", "RETURN", comment)
        for g in rules
    ]
