"""What every `mesh` command shares: exit codes, diagnostics on stderr, the `-f` flag.

Exit codes, the same on every command: 0 ok, 1 findings (invalid manifests, failed contract
cases), 2 usage or load errors (argparse's own code for a bad command line). Diagnostics go
to stderr as ``file[doc] path: message (Reason)``, then a count.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TextIO

from turnout.engine.diagnostics import Diagnostic, Severity

EXIT_OK = 0
EXIT_FAILED = 1
"""Findings: invalid manifests, failed contract cases, a proxy that could not be scraped."""
EXIT_UNLOADABLE = 2
"""Usage or load errors: the command could not look at the input at all."""


def add_files(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        required=required,
        metavar="PATH",
        help="manifest file, directory (recursive) or - for stdin; repeatable",
    )


def print_diagnostics(diags: Sequence[Diagnostic], err: TextIO) -> None:
    for d in diags:
        print(str(d), file=err)
    errors = sum(d.severity is Severity.ERROR for d in diags)
    warnings = sum(d.severity is Severity.WARNING for d in diags)
    if errors or warnings:
        print(f"{errors} error(s), {warnings} warning(s)", file=err)
