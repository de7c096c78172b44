"""How big a composed document is once its aliases are written out, counted without writing
them out; and a composer that counts while it composes.

```
measure_node(node)        libyaml's node graph (an alias is a shared node): each distinct node
                          visited once, sizes and heights memoised -> over a cap: LimitExceeded
measure_object(obj)       the same for parsed JSON (a tree)
CountingComposer(loader)  libyaml's events -> nodes, counted as they come: a document that
                          could be huge is stopped at the cap, not after
```

Used by `limits.compose_yaml` only; the caps themselves (`ManifestLimits`) live there.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

import yaml

from turnout.engine.errors import LimitExceeded

if TYPE_CHECKING:
    from turnout.engine.model.limits import ManifestLimits


@dataclass(frozen=True, slots=True)
class Where:
    """The document being measured, for the error (and its line offset, for marks)."""

    file: str
    doc_index: int
    line_offset: int


def too_many(limits: ManifestLimits, where: Where) -> LimitExceeded:
    return LimitExceeded(
        f"document holds more than {limits.max_nodes:,} values (mappings, lists, scalars;"
        " an alias counts as the values it repeats)",
        file=where.file,
        doc_index=where.doc_index,
    )


def too_deep(limits: ManifestLimits, where: Where) -> LimitExceeded:
    return LimitExceeded(
        f"document is nested more than {limits.max_depth} levels deep",
        file=where.file,
        doc_index=where.doc_index,
    )


def recursive(mark: yaml.Mark | None, where: Where) -> LimitExceeded:
    at = f" (line {where.line_offset + mark.line + 1})" if mark is not None else ""
    return LimitExceeded(
        f"an alias refers to a node that contains it{at}: an endless expansion",
        file=where.file,
        doc_index=where.doc_index,
    )


def measure_node(root: yaml.Node, limits: ManifestLimits, where: Where) -> None:
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
                raise too_many(limits, where)
            if height > limits.max_depth:
                raise too_deep(limits, where)
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
                raise recursive(child.start_mark, where)
            if id(child) not in done:
                stack.append((child, False))


def measure_object(root: object, limits: ManifestLimits, where: Where) -> None:
    """`measure_node` for parsed JSON (a tree: nothing is shared)."""
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
            raise too_deep(limits, where)
        stack.extend((c, depth + 1) for c in children)
        if count + len(stack) > limits.max_nodes:
            raise too_many(limits, where)


class _Events(Protocol):
    """The event interface of a loader (untyped in PyYAML's stubs)."""

    def check_event(self, *choices: type[yaml.Event]) -> bool: ...

    def get_event(self) -> yaml.Event: ...

    def resolve(self, kind: type[yaml.Node], value: str | None, implicit: object) -> str: ...


def has_document(loader: yaml.SafeLoader) -> bool:
    """`check_node` for the event interface: skip the stream start, stop at its end."""
    events = cast(_Events, loader)
    if events.check_event(yaml.StreamStartEvent):
        events.get_event()
    return not events.check_event(yaml.StreamEndEvent)


def _mark(mark: object) -> yaml.Mark | None:
    """libyaml's marks have the fields of PyYAML's (`line`, `column`), not its type."""
    return cast(yaml.Mark | None, mark)


class CountingComposer:
    """Composes one document from libyaml's events, counting as it goes, so a document
    whose text could hold more than `max_nodes` nodes is stopped at the cap, not after."""

    def __init__(self, loader: yaml.SafeLoader, limits: ManifestLimits, where: Where) -> None:
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
            raise too_deep(self.limits, self.where)
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
            raise recursive(_mark(event.start_mark), self.where)
        _, size, height = entry
        self.add(size)
        if depth - 1 + height > self.limits.max_depth:
            raise too_deep(self.limits, self.where)
        return entry

    def add(self, n: int) -> None:
        self.count += n
        if self.count > self.limits.max_nodes:
            raise too_many(self.limits, self.where)

    def tag(self, event: yaml.Event, kind: type[yaml.Node], value: str | None) -> str:
        tag = getattr(event, "tag", None)
        if tag is None or tag == "!":
            return self.loader.resolve(kind, value, getattr(event, "implicit", True))
        return str(tag)
