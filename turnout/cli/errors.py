"""Exceptions of the `mesh` command line: a command that cannot go on.

```
CommandError            main() prints "error: <message>" and exits 2 (usage or load error)
 ├── UsageError         flags that do not fit together, a value out of range
 ├── ViaError           a --via (or a contract case's via) that names no parent
 └── ContractError      a contract file that cannot be read
```

Findings (invalid manifests, failed contract cases) are not exceptions: commands report them
and exit 1. A contract that does not follow the format is reported problem by problem (file,
document, field, line; `engine.model.contract`) and exits 2 as well. `cli.args.MeshParser`
raises `UsageError` for a bad command line instead of printing argparse's usage block. The engine's `MeshError` tree (`turnout.engine.errors`) covers what the engine
raises; `main` turns a `LoadError` into the same one line.
"""

from __future__ import annotations


class CommandError(Exception):
    """A command cannot go on; its message is the whole line the user sees."""


class UsageError(CommandError):
    """The command line does not make sense (flags that exclude each other, bad values)."""


class ViaError(CommandError, ValueError):
    """A `--via`/`via:` that does not name a parent."""


class ContractError(CommandError):
    """A contract file that cannot be read."""
