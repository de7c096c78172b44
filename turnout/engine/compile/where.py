"""Field positions built only when a finding is reported there.

```
Where(loaded.pos, "spec.rules[0]").child("backendRefs[1]")   two small objects, no strings joined
   └─ pos_of(where) -> SourcePos("f.yaml", 3, "spec.rules[0].backendRefs[1]")   only on report
```
Compiling 10k routes visits about 110k fields and reports almost none of them: building each
`SourcePos` eagerly (a path f-string plus a tuple) cost a tenth of `compile_rules`. A `Where`
keeps the parent and the suffix and joins them on demand; the resulting `SourcePos` is the
same one `SourcePos.child` would have built, so diagnostics do not change.
"""

from __future__ import annotations

from turnout.engine.diagnostics import SourcePos


class Where:
    """A field below `parent`, resolved by `pos_of`."""

    __slots__ = ("_parent", "_suffix")

    def __init__(self, parent: SourcePos | Where, suffix: str) -> None:
        self._parent = parent
        self._suffix = suffix

    def child(self, suffix: str) -> Where:
        return Where(self, suffix)

    @property
    def pos(self) -> SourcePos:
        return pos_of(self._parent).child(self._suffix)


At = SourcePos | Where
"""Where a compile function may report: a position, or one still to be built."""


def pos_of(at: At) -> SourcePos:
    return at if isinstance(at, SourcePos) else at.pos
