"""The caps on manifest input, and the one bounded YAML/JSON reader every loader goes through.

```
read_manifest(file)      the file's size is checked before it is read (stat, then a bounded
      │ text             read, stdin too): over max_file_bytes -> LimitExceeded
      v
compose_yaml(text)       split at column-0 `---` lines (libyaml's own document boundaries;
      │                  `yaml_pieces` gives the same pieces, to read one on its own)
      │                  a document over max_document_bytes -> LimitExceeded, never parsed
      │   small document (its indicator count bounds its nodes under max_nodes):
      │        libyaml composes it, then `measure_node` walks it once per distinct node
      │   large document: `CountingComposer` composes it event by event, stopped at the cap
      │   either way: nodes with each alias counted as what it repeats > max_nodes, nesting
      │   > max_depth, an alias inside its own anchor -> LimitExceeded
      v
Composed(node, line offset) --load_yaml--> objects (an alias shares its object: nothing
                                           is ever expanded)
```

A YAML alias bomb costs what its text costs: the expansion is counted on the node graph
(memoised per node), so the billion laughs is refused in milliseconds. A cap exceeded raises
`LimitExceeded` (file, document index and the cap, in one line); bad YAML is a `BadYAML` each
caller turns into its own kind of finding. The counting is in `expansion`. Deliberately not
here: files vs directories and what a document means (`loader`), contract files (`contract`).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from turnout.engine.config import (
    DEFAULT_MAX_FILE_BYTES,
    MAX_DOCUMENT_BYTES,
    MAX_DOCUMENT_DEPTH,
    MAX_DOCUMENT_NODES,
)
from turnout.engine.errors import LimitExceeded, LoadError
from turnout.engine.model.expansion import (
    CountingComposer,
    Where,
    has_document,
    measure_node,
    measure_object,
    too_deep,
)

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ManifestLimits:
    """What one manifest file and each of its documents may cost (see `engine.config`)."""

    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_document_bytes: int = MAX_DOCUMENT_BYTES
    max_nodes: int = MAX_DOCUMENT_NODES
    """Per document, each alias counted as the nodes it repeats."""
    max_depth: int = MAX_DOCUMENT_DEPTH
    """Mappings and lists nested in one another, the document's own included."""


DEFAULT_LIMITS = ManifestLimits()

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_LIBYAML = _BaseLoader is not yaml.SafeLoader
"""With libyaml, small documents are composed in C; PyYAML's own composer recurses once
per level with no cap of its own, so without libyaml `CountingComposer` does them all."""


class _Loader(_BaseLoader):  # type: ignore[valid-type, misc]
    """libyaml's safe loader (7x faster than the pure-Python one) that keeps timestamps as
    strings, as the API server's JSON does."""


_Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_DOCUMENT_START = re.compile(r"^(?:%[^\n]*\n)*---(?=[ \t\r\n]|\Z)", re.MULTILINE)
"""Where a document starts (its directives, then ``---`` at column 0): libyaml ends any
mapping there, so no mapping document spans two of these segments."""

_NODE_INDICATORS = "\n,:-[{?"
"""Every node of a document but its first starts after one of these, and a block mapping
shares its start with its first key: twice their count bounds the node count."""

_LINE_LEAD = re.compile(r"^[ ?-]*", re.MULTILINE)
"""A line's indentation and block indicators: in block style each level of nesting takes a
column or an indicator, or shares one with its parent (a mapping in a list item), so twice
the longest lead, plus every flow bracket, bounds the depth."""


@dataclass(frozen=True, slots=True)
class BadYAML:
    """Text libyaml refused (a syntax error, an undefined alias): the file ends there."""

    problem: str
    line: int | None
    """1-based line in the file; None when libyaml gave no position."""
    column: int | None = None

    @property
    def message(self) -> str:
        if self.line is None:
            return f"invalid YAML: {self.problem}"
        return f"invalid YAML: {self.problem} (line {self.line}, column {self.column})"


@dataclass(frozen=True, slots=True)
class Composed:
    """One document's node graph (aliases are shared nodes), checked against the caps."""

    node: yaml.Node
    line_offset: int
    """Lines of the file before the text this node's marks count from."""
    loader: yaml.SafeLoader

    def construct(self) -> object:
        """The plain objects (dicts, lists, scalars); an alias shares its anchor's object."""
        return self.loader.construct_document(self.node)


def read_manifest(file: str, *, limits: ManifestLimits = DEFAULT_LIMITS) -> str:
    """The text of `file` ("-" is stdin), refused unread when over `max_file_bytes`."""
    if file == "-":
        text = sys.stdin.read(limits.max_file_bytes + 1)  # characters: at least as many bytes
        size = _text_bytes(text, 0, len(text), limits.max_file_bytes)
        if size > limits.max_file_bytes:
            raise _too_big_file(size, limits.max_file_bytes, file)
        return text
    return manifest_text(read_manifest_bytes(file, limits=limits), file)


def manifest_text(data: bytes, file: str) -> str:
    """A manifest's bytes as text (UTF-8); `LoadError` when they are not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LoadError(f"cannot read: {exc}", file=file) from exc


def read_manifest_bytes(file: str, *, limits: ManifestLimits = DEFAULT_LIMITS) -> bytes:
    """The bytes of a manifest file, refused unread when over `max_file_bytes`."""
    cap = limits.max_file_bytes
    try:
        with Path(file).open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > cap:
                raise _too_big_file(size, cap, file)
            data = f.read(cap + 1)  # the file may have grown since the stat
    except OSError as exc:
        raise LoadError(f"cannot read: {exc}", file=file) from exc
    if len(data) > cap:
        raise _too_big_file(len(data), cap, file)
    return data


def load_yaml(
    text: str,
    *,
    file: str,
    limits: ManifestLimits = DEFAULT_LIMITS,
    first_index: int = 0,
    first_line: int = 0,
) -> Iterator[object | BadYAML]:
    """Each document's objects (None for an empty one), in order; JSON text too. A `BadYAML`
    ends the file; a cap exceeded raises `LimitExceeded`. `first_index` and `first_line`:
    where `text` starts in its file, when it is one of `yaml_pieces` read on its own."""
    if first_index == 0 and _json_like(text):
        obj = _json(text, file=file, limits=limits)
        if obj is not _NOT_JSON:
            yield obj
            return
    pieces = compose_yaml(
        text, file=file, limits=limits, first_index=first_index, first_line=first_line
    )
    for doc in pieces:
        yield doc if isinstance(doc, BadYAML) else doc.construct()


def yaml_pieces(text: str) -> list[tuple[str, int]] | None:
    """The pieces `compose_yaml` composes one at a time, each with the line it starts on:
    a document each (libyaml's own boundaries), so reading a piece on its own (`load_yaml`
    with its `first_index` and `first_line`) finds what reading the whole text finds there.
    None for text that may be JSON, which is read whole."""
    if _json_like(text):
        return None
    out: list[tuple[str, int]] = []
    line = 0
    for start, end in _segments(text):
        out.append((text[start:end], line))
        line += text.count("\n", start, end)
    return out


def compose_yaml(
    text: str,
    *,
    file: str,
    limits: ManifestLimits = DEFAULT_LIMITS,
    first_index: int = 0,
    first_line: int = 0,
) -> Iterator[Composed | BadYAML]:
    """Each document's nodes (see the module docstring); a `BadYAML` ends the file."""
    index = first_index
    line = first_line
    for start, end in _segments(text):
        size = _text_bytes(text, start, end, limits.max_document_bytes)
        if size > limits.max_document_bytes:
            raise _too_big_document(size, limits.max_document_bytes, file, index)
        bound = 2 * (1 + sum(text.count(c, start, end) for c in _NODE_INDICATORS))
        fast = _LIBYAML and bound <= limits.max_nodes
        loader = _Loader(text[start:end])
        try:
            while loader.check_node() if fast else has_document(loader):
                where = Where(file, index, line)
                if fast:
                    node = loader.get_node()
                    if not _shallow_tree(text, start, end, limits):
                        measure_node(node, limits, where)
                else:
                    node = CountingComposer(loader, limits, where).document()
                yield Composed(node, line, loader)
                index += 1
        except yaml.YAMLError as exc:
            yield _bad(exc, file=file, doc_index=index, line_offset=line, limits=limits)
            return
        finally:
            loader.dispose()
        line += text.count("\n", start, end)


# ---- reading


def _json_like(text: str) -> bool:
    return text.lstrip().startswith(("{", "["))


def _segments(text: str) -> Iterator[tuple[int, int]]:
    start = 0
    for m in _DOCUMENT_START.finditer(text):
        if m.start() > start:
            yield start, m.start()
        start = m.start()
    yield start, len(text)


def _text_bytes(text: str, start: int, end: int, cap: int) -> int:
    """UTF-8 size of ``text[start:end]``, counted exactly only when it could pass `cap`
    (a character is at most 4 bytes)."""
    n = end - start
    if n * 4 <= cap:
        return n
    return len(text[start:end].encode("utf-8", "surrogatepass"))


def _shallow_tree(text: str, start: int, end: int, limits: ManifestLimits) -> bool:
    """The text has no alias and cannot nest past `max_depth` (`_LINE_LEAD`), so its nodes,
    bounded by `_NODE_INDICATORS`, need no walk."""
    if text.find("*", start, end) != -1:
        return False
    brackets = text.count("[", start, end) + text.count("{", start, end)
    if brackets >= limits.max_depth:
        return False
    lead = max(map(len, _LINE_LEAD.findall(text, start, end)), default=0)
    return 1 + 2 * lead + brackets <= limits.max_depth


def _too_big_file(size: int, cap: int, file: str) -> LimitExceeded:
    return LimitExceeded(
        f"file is {_size(size)}, over the {_size(cap)} limit on one file (--max-file-size)",
        file=file,
    )


def _too_big_document(size: int, cap: int, file: str, index: int) -> LimitExceeded:
    return LimitExceeded(
        f"document is {_size(size)}, over the {_size(cap)} limit on one document"
        " (the API server's request limit)",
        file=file,
        doc_index=index,
    )


def _size(n: int) -> str:
    """``3 MiB``, ``3.2 MiB``, ``16 KiB``, ``900 bytes``."""
    for unit, name in ((MIB, "MiB"), (1024, "KiB")):
        if n >= unit:
            return f"{n // unit} {name}" if n % unit == 0 else f"{n / unit:.1f} {name}"
    return f"{n} bytes"


def _bad(
    exc: yaml.YAMLError, *, file: str, doc_index: int, line_offset: int, limits: ManifestLimits
) -> BadYAML:
    problem = getattr(exc, "problem", None) or str(exc)
    if "maximum nesting depth" in problem:  # libyaml's own cap (1000), past ours
        raise too_deep(limits, Where(file, doc_index, line_offset)) from exc
    mark = getattr(exc, "problem_mark", None)
    if mark is None:
        return BadYAML(str(problem), None)
    return BadYAML(str(problem), line_offset + mark.line + 1, mark.column + 1)


_NOT_JSON = object()


def _json(text: str, *, file: str, limits: ManifestLimits) -> object:
    """A JSON file's one document, or `_NOT_JSON` (flow-style YAML: the YAML path judges)."""
    where = Where(file, 0, 0)
    size = _text_bytes(text, 0, len(text), limits.max_document_bytes)
    if size > limits.max_document_bytes:
        raise _too_big_document(size, limits.max_document_bytes, file, 0)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return _NOT_JSON
    except RecursionError as exc:
        raise too_deep(limits, where) from exc
    measure_object(obj, limits, where)
    return obj
