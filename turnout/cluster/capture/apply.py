"""Running iptables: read the nat table, write our batch in one `iptables-restore`.

```
apply_rules(config, binary) ─ <binary>-save -t nat ─► saved text
                            ─ restore_batch(config, saved) ─► <binary>-restore --noflush -w
                            ─ <binary>-save -t nat ─► Applied(batch, ours(after))
```

One batch is one transaction: either every rule is in or none is (iptables-restore commits
the table at ``COMMIT``), so an init container that fails leaves the pod as it was. The
binary is chosen by `--iptables` (``iptables`` follows the system's alternative;
``iptables-legacy`` / ``iptables-nft`` name a backend), as linkerd-init's ``--iptables-mode``.
Errors are one line (`errors.py`). Blocking calls: this runs in a short-lived command, not
in an event loop.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass

from turnout.cluster.capture.errors import IptablesFailed, IptablesMissing
from turnout.cluster.capture.rules import CaptureConfig, ours, restore_batch

log = logging.getLogger(__name__)

BINARIES = ("iptables", "iptables-legacy", "iptables-nft")
TIMEOUT_S = 30.0
"""Longest wait for one iptables command (`-w` waits for the xtables lock within it)."""


@dataclass(frozen=True, slots=True)
class Applied:
    """What `apply_rules` did."""

    batch: str
    """The batch given to iptables-restore."""
    rules: list[str]
    """Our lines in the nat table afterwards (as `iptables-save` prints them)."""


def tools(binary: str) -> tuple[str, str]:
    """The paths of ``<binary>-save`` and ``<binary>-restore``, or `IptablesMissing`."""
    found = []
    for suffix in ("-save", "-restore"):
        name = binary + suffix
        path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
        if path is None:
            raise IptablesMissing(
                f"{name} not found on PATH (install iptables: apt-get install iptables)"
            )
        found.append(path)
    return found[0], found[1]


def save_nat(save: str) -> str:
    return _run([save, "-t", "nat"], None)


def apply_rules(config: CaptureConfig, binary: str = "iptables") -> Applied:
    save, restore = tools(binary)
    batch = restore_batch(config, save_nat(save))
    log.debug("iptables-restore batch:\n%s", batch)
    _run([restore, "--noflush", "-w", "5"], batch)
    return Applied(batch=batch, rules=ours(save_nat(save)))


def _run(argv: list[str], stdin: str | None) -> str:
    name = argv[0].rsplit("/", 1)[-1]
    try:
        done = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise IptablesFailed(f"{name}: {exc}") from exc
    if done.returncode != 0:
        first = next((x for x in done.stderr.splitlines() if x.strip()), "")
        raise IptablesFailed(
            f"{name} failed (exit {done.returncode}): {first or 'no message'}"
            + (" (proxy-init needs NET_ADMIN: run as root)" if "ermission" in first else "")
        )
    return done.stdout
