"""Exceptions of the engine: failures that are not a finding about the user's YAML.

```
MeshError
 ├── LoadError            a file cannot be read or parsed (bad YAML); names file and doc index
 │    └── LimitExceeded   a file or document over a size, alias or nesting cap
 ├── ValidationFailed     the input has error diagnostics; holds them all
 ├── SourceError          a resource source (directory, Kubernetes) failed
 └── ControlPlaneError    the xDS server failed
```

Findings about what the user wrote are `Diagnostic`s, not exceptions; an exception here
means the operation could not go on at all. Every one pickles (`mesh proxy -f` compiles in a
child process and gets them back through a process pool).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from turnout.engine.diagnostics import Diagnostic


class MeshError(Exception):
    """Base of every Turnout engine exception."""


class LoadError(MeshError):
    """A file could not be read or parsed."""

    def __init__(self, message: str, *, file: str, doc_index: int | None = None) -> None:
        where = file if doc_index is None else f"{file}[{doc_index}]"
        super().__init__(f"{where}: {message}")
        self.message = message
        """What is wrong, without the file."""
        self.file = file
        self.doc_index = doc_index

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return functools.partial(type(self), file=self.file, doc_index=self.doc_index), (
            self.message,
        )


class LimitExceeded(LoadError):
    """A manifest file or document is over one of the caps (`engine.model.limits`): too
    big, an alias expansion too large, nested too deep. It is refused before anything
    expands it; the message names the cap."""


class ValidationFailed(MeshError):
    """The input holds errors; `diagnostics` lists every one of them."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = tuple(diagnostics)
        super().__init__(f"{len(self.diagnostics)} problem(s); first: {self.diagnostics[0]}")

    def __reduce__(self) -> tuple[object, tuple[tuple[Diagnostic, ...]]]:
        return type(self), (self.diagnostics,)


class SourceError(MeshError):
    """A resource source failed (directory unreadable, API server unreachable)."""


class ControlPlaneError(MeshError):
    """The control plane (xDS server) failed."""
