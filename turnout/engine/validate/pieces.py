"""One manifest file validated a document at a time, reusing what an earlier read of the same
file found for every document whose text and place did not change.

```
text --yaml_pieces--> piece texts, one document each (libyaml's own boundaries)
   a piece known from the last read (same digest, same first document index)
        -> its objects and findings as they were, not read again
   a new piece -> read_documents (its first index and line) -> parse_document each
        -> validate_object each (kept per object) + the CRD check of its documents
every piece's objects --merge_objects--> the file's objects (DuplicateObject, as validate_paths)
the built-in findings of the objects kept + each piece's own findings --> sorted, deduplicated
```

The result equals `validate_paths([file])` of the same text, objects and diagnostics alike
(tested over edits of every kind): each document is read, parsed and checked on its own there
too, and only the merge looks across documents. One route edited in a file of 100 then costs
its own document's YAML, parse and rules, not the file's (the YAML construction alone is
~0.3 ms a route). A piece that ended in bad YAML is never reused (its message has a line) and
nothing after it is read, as in the whole file. Text that may be JSON has no pieces: `None`,
and the caller reads it whole. Objects are kept without their raw documents (`without_raw`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from turnout.engine.diagnostics import Diagnostic, sorted_diagnostics
from turnout.engine.model import Loaded, Resource, Resources
from turnout.engine.model.kinds import merge_objects, parse_document
from turnout.engine.model.limits import DEFAULT_LIMITS, ManifestLimits, yaml_pieces
from turnout.engine.model.loader import read_documents
from turnout.engine.validate.common import Channel
from turnout.engine.validate.crds import CRDSet, validate_with_crds
from turnout.engine.validate.rules import validate_object

_NO_RAW: Mapping[str, object] = MappingProxyType({})


def without_raw(obj: Loaded[Resource]) -> Loaded[Resource]:
    """`obj` without the raw document it was parsed from: validation is done and the compiler
    reads only the typed object, so a watched directory keeps no parsed YAML (10,000 routes:
    45 MB of dicts)."""
    return dataclasses.replace(obj, raw=_NO_RAW)


@dataclass(frozen=True, slots=True)
class Piece:
    """What one document's text held, as validated."""

    digest: bytes
    first: int
    """Its first document index in the file (findings carry it)."""
    count: int
    """Documents it held, empty ones too."""
    bad: bool
    """It ended in bad YAML: the file ends here."""
    objects: tuple[tuple[Loaded[Resource], tuple[Diagnostic, ...]], ...]
    """Each object parsed (without its raw document) with its built-in rule findings."""
    diagnostics: tuple[Diagnostic, ...]
    """Load, schema and CRD findings of its documents."""


@dataclass(frozen=True, slots=True)
class FileReport:
    """`validate_paths([file])`'s objects and diagnostics, with the pieces for the next read."""

    resources: Resources
    diagnostics: tuple[Diagnostic, ...]
    pieces: tuple[Piece, ...]


def validate_pieces(
    text: str,
    *,
    file: str,
    known: Sequence[Piece] = (),
    crds: CRDSet | None = None,
    channel: Channel = "experimental",
    limits: ManifestLimits = DEFAULT_LIMITS,
) -> FileReport | None:
    """The file's text validated piece by piece, `known` pieces reused (module docstring);
    None for text that may be JSON. A cap exceeded raises `LimitExceeded`."""
    texts = yaml_pieces(text)
    if texts is None:
        return None
    earlier = {(p.digest, p.first): p for p in known if not p.bad}
    pieces: list[Piece] = []
    index = 0
    for piece_text, line in texts:
        digest = hashlib.blake2b(piece_text.encode("utf-8", "surrogatepass"), digest_size=16)
        piece = earlier.get((digest.digest(), index))
        if piece is None:
            piece = _read(piece_text, digest.digest(), file, index, line, crds, channel, limits)
        pieces.append(piece)
        index += piece.count
        if piece.bad:
            break
    return _report(pieces)


def _read(
    text: str,
    digest: bytes,
    file: str,
    first: int,
    line: int,
    crds: CRDSet | None,
    channel: Channel,
    limits: ManifestLimits,
) -> Piece:
    read = read_documents(text, file=file, limits=limits, first_index=first, first_line=line)
    diags = read.diags
    objects: list[tuple[Loaded[Resource], tuple[Diagnostic, ...]]] = []
    for doc in read.docs:
        loaded, found = parse_document(doc)
        diags.extend(found)
        if loaded is not None:
            own = tuple(validate_object(loaded, channel=channel))
            objects.append((without_raw(loaded), own))
    if crds is not None:
        diags.extend(validate_with_crds(read.docs, crds))
    return Piece(digest, first, read.count, read.bad, tuple(objects), tuple(diags))


def _report(pieces: list[Piece]) -> FileReport:
    diags: list[Diagnostic] = [d for p in pieces for d in p.diagnostics]
    own = {id(o): found for p in pieces for o, found in p.objects}
    resources = merge_objects((o for p in pieces for o, _ in p.objects), diags)
    diags.extend(d for o in resources.objects for d in own[id(o)])
    return FileReport(resources, tuple(sorted_diagnostics(diags)), tuple(pieces))
