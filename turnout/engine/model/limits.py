"""The caps on manifest input, and the one bounded YAML/JSON reader every loader goes through.

```
read_manifest(file)      the file's size is checked before it is read (stat, then a bounded
      │ text             read, stdin too): over max_file_bytes -> LimitExceeded
      v
compose_yaml(text)       split at column-0 `---` lines (libyaml's own document boundaries)
      │                  a document over max_document_bytes -> LimitExceeded, never parsed
      │   small document (its indicator count bounds its nodes under max_nodes):
      │        libyaml composes it, then `_measure` walks it once per distinct node
      │   large document: composed here event by event, counting, stopped at the cap
      │   either way: nodes with each alias counted as what it repeats > max_nodes, nesting
      │   > max_depth, an alias inside its own anchor -> LimitExceeded
      v
Composed(node, line offset) --load_yaml--> objects (an alias shares its object: nothing
                                           is ever expanded)
```

A YAML alias bomb costs what its text costs: the expansion is counted on the node graph
(memoised per node), so the billion laughs is refused in milliseconds. A cap exceeded raises
`LimitExceeded` (file, document index and the cap, in one line); bad YAML is a `BadYAML` each
caller turns into its own kind of finding. Deliberately not here: files vs directories and
what a document means (`loader`), contract files (`contract`).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

import yaml

from turnout.engine.config import (
    DEFAULT_MAX_FILE_BYTES,
    MAX_DOCUMENT_BYTES,
    MAX_DOCUMENT_DEPTH,
    MAX_DOCUMENT_NODES,
)
from turnout.engine.errors import LimitExceeded, LoadError

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
per level with no cap of its own, so without libyaml `_CountingComposer` does them all."""


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
    data = read_manifest_bytes(file, limits=limits)
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
    text: str, *, file: str, limits: ManifestLimits = DEFAULT_LIMITS
) -> Iterator[object | BadYAML]:
    """Each document's objects (None for an empty one), in order; JSON text too. A `BadYAML`
    ends the file; a cap exceeded raises `LimitExceeded`."""
    if text.lstrip().startswith(("{", "[")):
        obj = _json(text, file=file, limits=limits)
        if obj is not _NOT_JSON:
            yield obj
            return
    for doc in compose_yaml(text, file=file, limits=limits):
        yield doc if isinstance(doc, BadYAML) else doc.construct()


def compose_yaml(
    text: str, *, file: str, limits: ManifestLimits = DEFAULT_LIMITS
) -> Iterator[Composed | BadYAML]:
    """Each document's nodes (see the module docstring); a `BadYAML` ends the file."""
    index = 0
    line = 0
    for start, end in _segments(text):
        size = _text_bytes(text, start, end, limits.max_document_bytes)
        if size > limits.max_document_bytes:
            raise LimitExceeded(
                f"document is {_mib(size)}, over the {_mib(limits.max_document_bytes)} limit"
                " on one document (the API server's request limit)",
                file=file,
                doc_index=index,
            )
        bound = 2 * (1 + sum(text.count(c, start, end) for c in _NODE_INDICATORS))
        fast = _LIBYAML and bound <= limits.max_nodes
        loader = _Loader(text[start:end])
        try:
            while loader.check_node() if fast else _more(loader):
                where = _Where(file, index, line)
                if fast:
                    node = loader.get_node()
                    if not _shallow_tree(text, start, end, limits):
                        _measure(node, limits, where)
                else:
                    node = _CountingComposer(loader, limits, where).document()
                yield Composed(node, line, loader)
                index += 1
        except yaml.YAMLError as exc:
            yield _bad(exc, file=file, doc_index=index, line_offset=line, limits=limits)
            return
        finally:
            loader.dispose()
        line += text.count("\n", start, end)


# ---- reading


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
        f"file is {_mib(size)}, over the {_mib(cap)} limit on one file (--max-file-size)",
        file=file,
    )


def _mib(n: int) -> str:
    return f"{n / MIB:.1f} MiB" if n % MIB else f"{n // MIB} MiB"


def _bad(
    exc: yaml.YAMLError, *, file: str, doc_index: int, line_offset: int, limits: ManifestLimits
) -> BadYAML:
    problem = getattr(exc, "problem", None) or str(exc)
    if "maximum nesting depth" in problem:  # libyaml's own cap (1000), past ours
        raise _too_deep(limits, _Where(file, doc_index, line_offset)) from exc
    mark = getattr(exc, "problem_mark", None)
    if mark is None:
        return BadYAML(str(problem), None)
    return BadYAML(str(problem), line_offset + mark.line + 1, mark.column + 1)


_NOT_JSON = object()


def _json(text: str, *, file: str, limits: ManifestLimits) -> object:
    """A JSON file's one document, or `_NOT_JSON` (flow-style YAML: the YAML path judges)."""
    where = _Where(file, 0, 0)
    size = _text_bytes(text, 0, len(text), limits.max_document_bytes)
    if size > limits.max_document_bytes:
        raise LimitExceeded(
            f"document is {_mib(size)}, over the {_mib(limits.max_document_bytes)} limit"
            " on one document (the API server's request limit)",
            file=file,
            doc_index=0,
        )
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return _NOT_JSON
    except RecursionError as exc:
        raise _too_deep(limits, where) from exc
    _measure_object(obj, limits, where)
    return obj


# ---- the caps


@dataclass(frozen=True, slots=True)
class _Where:
    file: str
    doc_index: int
    line_offset: int


def _too_many(limits: ManifestLimits, where: _Where) -> LimitExceeded:
    return LimitExceeded(
        f"document holds more than {limits.max_nodes:,} values (mappings, lists, scalars;"
        " an alias counts as the values it repeats)",
        file=where.file,
        doc_index=where.doc_index,
    )


def _too_deep(limits: ManifestLimits, where: _Where) -> LimitExceeded:
    return LimitExceeded(
        f"document is nested more than {limits.max_depth} levels deep",
        file=where.file,
        doc_index=where.doc_index,
    )


def _recursive(mark: yaml.Mark | None, where: _Where) -> LimitExceeded:
    at = f" (line {where.line_offset + mark.line + 1})" if mark is not None else ""
    return LimitExceeded(
        f"an alias refers to a node that contains it{at}: an endless expansion",
        file=where.file,
        doc_index=where.doc_index,
    )


def _measure(root: yaml.Node, limits: ManifestLimits, where: _Where) -> None:
    """Raise when `root`, each alias written out, is over `max_nodes` or `max_depth`.

    Each distinct node is visited once (sizes and heights are memoised), so the cost is the
    text's, not the expansion's; a node reached again while still open is a cycle."""
    if isinstance(root, yaml.ScalarNode):
        return
    done: dict[int, tuple[int, int]] = {}
    opened: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    scalar = yaml.ScalarNode
    while stack:
        node, closing = stack.pop()
        key = id(node)
        children = (
            itertools.chain.from_iterable(node.value)
            if isinstance(node, yaml.MappingNode)
            else node.value
        )
        if closing:
            size, height = 1, 0
            for child in children:
                if type(child) is scalar:
                    size += 1
                else:
                    s, h = done[id(child)]
                    size += s
                    height = max(height, h)
            height += 1
            if size > limits.max_nodes:
                raise _too_many(limits, where)
            if height > limits.max_depth:
                raise _too_deep(limits, where)
            done[key] = size, height
            opened.discard(key)
            continue
        if key in done:
            continue
        opened.add(key)
        stack.append((node, True))
        for child in children:
            if type(child) is scalar:
                continue
            if id(child) in opened:
                raise _recursive(child.start_mark, where)
            if id(child) not in done:
                stack.append((child, False))


def _measure_object(root: object, limits: ManifestLimits, where: _Where) -> None:
    """`_measure` for parsed JSON (a tree: nothing is shared)."""
    count = 0
    stack: list[tuple[object, int]] = [(root, 1)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if isinstance(value, dict):
            count += len(value)  # the keys
            children: list[object] | None = list(value.values())
        elif isinstance(value, list):
            children = value
        else:
            children = None
        if children is None:
            continue
        if depth > limits.max_depth:
            raise _too_deep(limits, where)
        stack.extend((c, depth + 1) for c in children)
        if count + len(stack) > limits.max_nodes:
            raise _too_many(limits, where)


class _Events(Protocol):
    """The event interface of a loader (untyped in PyYAML's stubs)."""

    def check_event(self, *choices: type[yaml.Event]) -> bool: ...

    def get_event(self) -> yaml.Event: ...

    def resolve(self, kind: type[yaml.Node], value: str | None, implicit: object) -> str: ...


def _more(loader: yaml.SafeLoader) -> bool:
    """`check_node` for the event interface: skip the stream start, stop at its end."""
    events = cast(_Events, loader)
    if events.check_event(yaml.StreamStartEvent):
        events.get_event()
    return not events.check_event(yaml.StreamEndEvent)


def _mark(mark: object) -> yaml.Mark | None:
    """libyaml's marks have the fields of PyYAML's (`line`, `column`), not its type."""
    return cast(yaml.Mark | None, mark)


class _CountingComposer:
    """Composes one document from libyaml's events, counting as it goes, so a document
    whose text could hold more than `max_nodes` nodes is stopped at the cap, not after."""

    def __init__(self, loader: yaml.SafeLoader, limits: ManifestLimits, where: _Where) -> None:
        self.loader = cast(_Events, loader)
        self.limits = limits
        self.where = where
        self.count = 0
        self.anchors: dict[str, tuple[yaml.Node, int, int] | None] = {}
        """anchor -> (node, size, height); None while its node is being composed."""

    def document(self) -> yaml.Node:
        self.loader.get_event()  # DocumentStartEvent
        node, _, _ = self.node(1)
        self.loader.get_event()  # DocumentEndEvent
        return node

    def node(self, depth: int) -> tuple[yaml.Node, int, int]:
        """The next node, its size (aliases written out) and its height."""
        event = self.loader.get_event()
        if isinstance(event, yaml.AliasEvent):
            return self.alias(event, depth)
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            if anchor in self.anchors:
                raise yaml.composer.ComposerError(
                    None, None, f"found duplicate anchor {anchor!r}", _mark(event.start_mark)
                )
            self.anchors[anchor] = None
        self.add(1)
        if isinstance(event, yaml.ScalarEvent):
            tag = self.tag(event, yaml.ScalarNode, event.value)
            out: tuple[yaml.Node, int, int] = (
                yaml.ScalarNode(
                    tag, event.value, _mark(event.start_mark), _mark(event.end_mark), event.style
                ),
                1,
                0,
            )
        else:
            out = self.collection(event, depth)
        if anchor is not None:
            self.anchors[anchor] = out
        return out

    def collection(self, event: yaml.Event, depth: int) -> tuple[yaml.Node, int, int]:
        if depth > self.limits.max_depth:
            raise _too_deep(self.limits, self.where)
        mapping = isinstance(event, yaml.MappingStartEvent)
        kind: type[yaml.CollectionNode] = yaml.MappingNode if mapping else yaml.SequenceNode
        end: type[yaml.Event] = yaml.MappingEndEvent if mapping else yaml.SequenceEndEvent
        items: list[object] = []
        size, height = 1, 0
        while not self.loader.check_event(end):
            child, s, h = self.node(depth + 1)
            if mapping:
                value, vs, vh = self.node(depth + 1)
                items.append((child, value))
                s, h = s + vs, max(h, vh)
            else:
                items.append(child)
            size, height = size + s, max(height, h)
        closing = self.loader.get_event()
        tag = self.tag(event, kind, None)
        flow = getattr(event, "flow_style", None)
        node = kind(tag, items, _mark(event.start_mark), _mark(closing.end_mark), flow)
        return node, size, height + 1

    def alias(self, event: yaml.AliasEvent, depth: int) -> tuple[yaml.Node, int, int]:
        if event.anchor not in self.anchors:
            raise yaml.composer.ComposerError(
                None, None, f"found undefined alias {event.anchor!r}", _mark(event.start_mark)
            )
        entry = self.anchors[event.anchor]
        if entry is None:
            raise _recursive(_mark(event.start_mark), self.where)
        _, size, height = entry
        self.add(size)
        if depth - 1 + height > self.limits.max_depth:
            raise _too_deep(self.limits, self.where)
        return entry

    def add(self, n: int) -> None:
        self.count += n
        if self.count > self.limits.max_nodes:
            raise _too_many(self.limits, self.where)

    def tag(self, event: yaml.Event, kind: type[yaml.Node], value: str | None) -> str:
        tag = getattr(event, "tag", None)
        if tag is None or tag == "!":
            return self.loader.resolve(kind, value, getattr(event, "implicit", True))
        return str(tag)
