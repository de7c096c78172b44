"""Reading manifests: files, directories and stdin into raw documents, like `kubectl -f`.

`-f FILE|DIR|-` may repeat; directories are walked recursively for *.yaml, *.yml and *.json
(sorted, so the order is stable); a file may hold several YAML documents; a `kind: List`
(or `<Kind>List`) contributes its `items`, each addressed as ``file[doc] items[i]``.
Empty documents are skipped but still counted, so document indices match what an editor shows.

A file that cannot be read raises `LoadError`, and one over a cap (`limits`: file and
document size, alias expansion, nesting) raises `LimitExceeded` before it is expanded; a
document that is not valid YAML or not a mapping becomes an error diagnostic and the other
documents still load. `field_lines` maps a document's field paths to the lines they are on,
for inputs whose errors also give the line (contract files).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from turnout.engine.diagnostics import Diagnostic, SourcePos, error
from turnout.engine.errors import LoadError
from turnout.engine.model.limits import (
    DEFAULT_LIMITS,
    BadYAML,
    ManifestLimits,
    load_yaml,
    read_manifest,
)

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True, slots=True, kw_only=True)
class Document:
    """One Kubernetes object as written, before any parsing."""

    pos: SourcePos
    raw: Mapping[str, object]


def expand_paths(paths: Iterable[str]) -> list[str]:
    """Files named by `-f` arguments: files as given, directories walked recursively."""
    out: list[str] = []
    for arg in paths:
        if arg == "-":
            out.append(arg)
            continue
        p = Path(arg)
        if p.is_dir():
            out.extend(
                str(f)
                for f in sorted(p.rglob("*"))
                if f.is_file() and f.suffix in MANIFEST_SUFFIXES
            )
        elif p.is_file():
            out.append(arg)
        else:
            raise LoadError("no such file or directory", file=arg)
    return out


def read_text(file: str, *, limits: ManifestLimits = DEFAULT_LIMITS) -> str:
    """The text of `file` ("-" is stdin); over `limits.max_file_bytes` it is not read."""
    return read_manifest(file, limits=limits)


@dataclass(slots=True)
class TextDocuments:
    """What one text (a file, or one of its `yaml_pieces`) holds."""

    docs: list[Document] = field(default_factory=list)
    diags: list[Diagnostic] = field(default_factory=list)
    count: int = 0
    """Documents read, empty ones too (the next text's first index is `first_index` + this)."""
    bad: bool = False
    """It ended in text that is not YAML: nothing after it in the file is read."""


def parse_text(
    text: str, *, file: str, limits: ManifestLimits = DEFAULT_LIMITS
) -> tuple[list[Document], list[Diagnostic]]:
    """Split one file's text into documents; bad YAML becomes a diagnostic, a cap exceeded
    raises `LimitExceeded`."""
    read = read_documents(text, file=file, limits=limits)
    return read.docs, read.diags


def read_documents(
    text: str,
    *,
    file: str,
    limits: ManifestLimits = DEFAULT_LIMITS,
    first_index: int = 0,
    first_line: int = 0,
) -> TextDocuments:
    """`parse_text` of a text that starts at document `first_index`, line `first_line` of
    `file` (`load_yaml`), with how many documents it held."""
    out = TextDocuments()
    loaded_docs = load_yaml(
        text, file=file, limits=limits, first_index=first_index, first_line=first_line
    )
    for index, loaded in enumerate(loaded_docs, first_index):
        out.count += 1
        pos = SourcePos(file=file, doc_index=index)
        if isinstance(loaded, BadYAML):
            out.diags.append(error("InvalidYAML", loaded.message, pos))
            out.bad = True
            continue
        if loaded is None:
            continue
        if not isinstance(loaded, Mapping):
            msg = "a document must be a mapping (an object)"
            out.diags.append(error("InvalidDocument", msg, pos))
            continue
        out.docs.extend(_unlist(loaded, pos, out.diags))
    return out


def load_documents(
    paths: Iterable[str], *, limits: ManifestLimits = DEFAULT_LIMITS
) -> tuple[list[Document], list[Diagnostic]]:
    """Every document of every file named by `paths` (see module docstring)."""
    docs: list[Document] = []
    diags: list[Diagnostic] = []
    for file in expand_paths(paths):
        d, g = parse_text(read_text(file, limits=limits), file=file, limits=limits)
        docs.extend(d)
        diags.extend(g)
    return docs, diags


def field_lines(node: yaml.Node, prefix: str = "", *, line_offset: int = 0) -> dict[str, int]:
    """Every field path of a composed YAML document (``cases[1].via.kind``, the spelling of
    `SourcePos.path`) -> its 1-based line: a mapping entry's key line, a list item's first.
    `line_offset`: lines before the text the node's marks count from (`Composed`)."""
    lines = {prefix: node.start_mark.line + 1 + line_offset}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = f"{prefix}.{key.value}" if prefix else str(key.value)
            lines.update(field_lines(value, path, line_offset=line_offset))
            lines[path] = key.start_mark.line + 1 + line_offset
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(field_lines(item, f"{prefix}[{i}]", line_offset=line_offset))
    return lines


def _unlist(
    obj: Mapping[str, object], pos: SourcePos, diags: list[Diagnostic]
) -> Iterator[Document]:
    kind = obj.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and "items" in obj:
        items = obj.get("items")
        if not isinstance(items, list):
            diags.append(error("InvalidDocument", "items must be a list", pos.at("items")))
            return
        for i, item in enumerate(items):
            ipos = pos.at(f"items[{i}]")
            if isinstance(item, Mapping):
                yield Document(pos=ipos, raw=item)
            else:
                diags.append(error("InvalidDocument", "a list item must be an object", ipos))
        return
    yield Document(pos=pos, raw=obj)
