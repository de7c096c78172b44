"""`mesh proxy-init`: write (or, with `--dry-run`, print) the pod's capture rules.

```
flags ─► CaptureConfig ─┬─ --dry-run: dry_run_text ─► stdout, nothing touched
                        └─ apply_rules(config, --iptables) ─► "proxy-init: ..." + our rules
```

A flag value that cannot be a rule, missing iptables binaries and a failed iptables run are
one ``error: ...`` line and exit 2, as every command's usage and load errors
(`turnout.cluster.capture.errors`).
"""

from __future__ import annotations

import argparse
from typing import TextIO

from turnout.cli.output import EXIT_OK, EXIT_UNLOADABLE
from turnout.cluster.capture.apply import apply_rules
from turnout.cluster.capture.errors import CaptureError
from turnout.cluster.capture.rules import (
    CaptureConfig,
    dry_run_text,
    parse_port_ranges,
    parse_subnets,
)


def capture_config(args: argparse.Namespace) -> CaptureConfig:
    return CaptureConfig(
        inbound_port=args.inbound_port,
        outbound_port=args.outbound_port,
        proxy_uid=args.proxy_uid,
        proxy_gid=args.proxy_gid,
        admin_port=args.admin_port,
        skip_inbound=parse_port_ranges("--skip-inbound-ports", args.skip_inbound_ports),
        skip_outbound=parse_port_ranges("--skip-outbound-ports", args.skip_outbound_ports),
        skip_subnets=parse_subnets("--skip-subnets", args.skip_subnets),
    )


def run_proxy_init(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        config = capture_config(args)
        if args.dry_run:
            out.write(dry_run_text(config))
            return EXIT_OK
        applied = apply_rules(config, args.iptables)
    except CaptureError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_UNLOADABLE
    print(
        f"proxy-init: nat table updated with {args.iptables}-restore --noflush: inbound TCP"
        f" -> :{config.inbound_port}, outbound TCP -> :{config.outbound_port}, uid"
        f" {config.proxy_uid} not captured",
        file=out,
    )
    for line in applied.rules:
        print(line, file=out)
    return EXIT_OK
