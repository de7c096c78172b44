"""Diagnostics: everything the user wrote wrong, with where they wrote it.

A `Diagnostic` names the file, the document index inside it and the field path in the
user's own spelling (camelCase, list indices), e.g.
``routes.yaml[2] spec.rules[0].backendRefs[1].weight: must be 0..1000000, got -5 (FieldValueInvalid)``.
Every stage (loading, schema, CEL, semantic rules, compile) appends to one list, so a user
sees every problem at once. This module only describes diagnostics; it never prints them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple


class Severity(enum.Enum):
    """How bad a finding is; ordered so that `max()` gives the worst."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2}


_new = tuple.__new__


class SourcePos(NamedTuple):
    """Where a finding points: a file, a document in it and a field path.

    A NamedTuple rather than a frozen dataclass: validation and compile build one per field
    they visit (hundreds of thousands for 10k routes), and tuple construction is the cheapest
    immutable object Python has."""

    file: str
    """Path of the file as the user gave it (or relative to a root), "-" for stdin."""
    doc_index: int
    """0-based index of the YAML/JSON document in the file (items of a `kind: List` count)."""
    path: str = ""
    """Field path in the user's spelling, e.g. ``spec.rules[0].matches[1].path.value``; "" = whole doc."""

    def at(self, path: str) -> SourcePos:
        """The same document, another field."""
        return SourcePos(self.file, self.doc_index, path)

    def child(self, suffix: str) -> SourcePos:
        """A field below this one: ``pos.child("weight")`` or ``pos.child("[2]")``."""
        # tuple.__new__ directly: NamedTuple's own __new__ is a Python function (this runs
        # ~20 times per route validated).
        file, doc_index, path = self
        if not path:
            return _new(SourcePos, (file, doc_index, suffix.lstrip(".")))
        if suffix[:1] == "[":
            return _new(SourcePos, (file, doc_index, path + suffix))
        return _new(SourcePos, (file, doc_index, path + "." + suffix))

    def __str__(self) -> str:
        head = f"{self.file}[{self.doc_index}]"
        return f"{head} {self.path}" if self.path else head


@dataclass(frozen=True, slots=True, kw_only=True)
class Diagnostic:
    """One finding. `reason` is a stable CamelCase code (Gateway API reasons where they exist)."""

    severity: Severity
    reason: str
    message: str
    pos: SourcePos

    def __str__(self) -> str:
        return f"{self.pos}: {self.message} ({self.reason})"

    def sort_key(self) -> tuple[str, int, str, str, str]:
        return (self.pos.file, self.pos.doc_index, self.pos.path, self.reason, self.message)


def error(reason: str, message: str, pos: SourcePos) -> Diagnostic:
    return Diagnostic(severity=Severity.ERROR, reason=reason, message=message, pos=pos)


def warning(reason: str, message: str, pos: SourcePos) -> Diagnostic:
    return Diagnostic(severity=Severity.WARNING, reason=reason, message=message, pos=pos)


def info(reason: str, message: str, pos: SourcePos) -> Diagnostic:
    return Diagnostic(severity=Severity.INFO, reason=reason, message=message, pos=pos)


def has_errors(diags: Iterable[Diagnostic], *, strict: bool = False) -> bool:
    """True if any diagnostic is an error (or, with `strict`, a warning)."""
    limit = Severity.WARNING.rank if strict else Severity.ERROR.rank
    return any(d.severity.rank >= limit for d in diags)


def sorted_diagnostics(diags: Sequence[Diagnostic]) -> list[Diagnostic]:
    """Stable, deterministic order: file, document, path, reason; duplicates dropped."""
    return sorted(set(diags), key=Diagnostic.sort_key)
