"""What every `mesh` command shares: exit codes, diagnostics on stderr, the `-f` flag and
reading what it names.

Exit codes, the same on every command (and in every `--help`, `cli.args`): 0 ok, 1 findings
(invalid manifests, failed contract cases, a proxy that cannot be reached), 2 usage or load
errors (a bad flag or value, a file that cannot be read, no objects at all, manifests a
command cannot run on). Diagnostics go to stderr as ``file[doc] path: message (Reason)``,
then a count.

```
-f PATH... ─> compile_manifests(files, verb) ─> CompiledInputs
                 no document and no finding at all: UsageError("no objects passed to VERB")
```
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from turnout.cli.args import byte_size
from turnout.cli.errors import UsageError
from turnout.engine.config import DEFAULT_MAX_FILE_BYTES
from turnout.engine.diagnostics import Diagnostic, Severity

if TYPE_CHECKING:
    from turnout.engine.pipeline import CompiledInputs

EXIT_OK = 0
EXIT_FAILED = 1
"""Findings: invalid manifests, failed contract cases, a proxy that could not be reached."""
EXIT_UNLOADABLE = 2
"""Usage or load errors: the command could not look at the input at all, or cannot run on it."""


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
    add_max_file_size(p)


def add_max_file_size(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-file-size",
        type=byte_size,
        default=DEFAULT_MAX_FILE_BYTES,
        metavar="SIZE",
        help="refuse manifest files larger than this, unread (default 16Mi; each document"
        " is capped at 3Mi, the API server's request limit, whatever this says)",
    )


def print_diagnostics(diags: Sequence[Diagnostic], err: TextIO) -> None:
    for d in diags:
        print(str(d), file=err)
    errors = sum(d.severity is Severity.ERROR for d in diags)
    warnings = sum(d.severity is Severity.WARNING for d in diags)
    if errors or warnings:
        print(f"{errors} error(s), {warnings} warning(s)", file=err)


def compile_manifests(
    files: Sequence[str],
    *,
    verb: str,
    crds: Sequence[str] = (),
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> CompiledInputs:
    """`compile_files`, but input that holds no object at all (an empty file, a directory
    without manifests) is a usage error, as ``kubectl apply`` says "no objects passed to
    apply", instead of an empty table that looks like success."""
    # Imported here for start-up cost: `mesh tap` and `mesh proxy` import this module and
    # must not load the engine (pydantic, jsonschema, CEL).
    from turnout.engine.model.limits import ManifestLimits
    from turnout.engine.pipeline import compile_files

    limits = ManifestLimits(max_file_bytes=max_file_bytes)
    compiled = compile_files(files, crds=crds, limits=limits)
    if not compiled.inputs.documents and not compiled.diagnostics:
        named = ", ".join(files)
        raise UsageError(f"no objects passed to {verb} ({named}: no YAML or JSON documents)")
    return compiled
