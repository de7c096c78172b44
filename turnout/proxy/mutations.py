"""Request/response mutation plans compiled once per update: headers and paths.

```
HeaderValueOption[] + *_to_remove ──> HeaderMutation(remove, ops)
HeaderMutation.apply(pairs) ──> new pairs    remove first, then each op in xDS order (as Envoy)

prefix_rewrite ──> PrefixReplace(prefix, replacement)   Gateway API ReplacePrefixMatch (§7.4)
regex_rewrite  ──> RegexReplace(pattern, template)      ReplaceFullPath (``^.*$``), or a prefix
                                                        replaced by "/" or "" (docs/xds.md)
path_redirect  ──> FullPath(value)
rewrite_path(plan, path) -> path
```

Headers: names compare case-insensitively and keep the case the control plane sent for added
headers (Gateway API §7.1). `append` joins onto an existing value with "," instead of adding
a second line, so the backend sees ``old,new`` whatever its HTTP version. Envoy's
``%COMMAND%`` formatters are not evaluated: values are literal except that ``%%`` is ``%``.

Paths: `PrefixReplace` follows Gateway API rather than Envoy's literal splice: P is the
matched prefix without its trailing "/", V the replacement without its trailing "/", the
result is V + rest, or "/" when empty. That reproduces every row of the §7.4 table and never
yields ``//bar``. Regex substitutions use RE2's ``\\N`` group syntax and replace every match,
as Envoy does. The query string is never touched here; callers keep it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from turnout.proxy.request import HeaderPairs

log = logging.getLogger(__name__)

HeaderAction = Literal["append", "add_if_absent", "overwrite", "overwrite_if_exists"]
"""Envoy `HeaderValueOption.append_action`: APPEND_IF_EXISTS_OR_ADD, ADD_IF_ABSENT,
OVERWRITE_IF_EXISTS_OR_ADD, OVERWRITE_IF_EXISTS."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderOp:
    """Add or set one header."""

    name: str
    """Name as configured (its case is kept on the wire)."""
    key: str
    """`name` lower-cased, for comparisons."""
    value: str
    action: HeaderAction


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderMutation:
    """Headers to remove, then to add/set, in order."""

    remove: frozenset[str] = frozenset()
    """Lower-cased names to delete."""
    ops: tuple[HeaderOp, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.remove or self.ops)

    def apply(self, headers: Sequence[tuple[str, str]]) -> HeaderPairs:
        """Return `headers` with this mutation applied; the input is not modified."""
        if not self:
            return headers if isinstance(headers, tuple) else tuple(headers)
        out = (
            [h for h in headers if h[0].lower() not in self.remove]
            if self.remove
            else list(headers)
        )
        for op in self.ops:
            _apply_op(out, op)
        return tuple(out)


NO_MUTATION = HeaderMutation()


def _apply_op(out: list[tuple[str, str]], op: HeaderOp) -> None:
    found = [i for i, (name, _) in enumerate(out) if name.lower() == op.key]
    if op.action == "add_if_absent":
        if not found:
            out.append((op.name, op.value))
    elif op.action in ("overwrite", "overwrite_if_exists"):
        if found or op.action == "overwrite":
            for i in reversed(found):
                del out[i]
            out.append((op.name, op.value))
    elif not found:
        out.append((op.name, op.value))
    else:
        first = found[0]
        joined = ",".join([out[i][1] for i in found] + [op.value])
        for i in reversed(found[1:]):
            del out[i]
        out[first] = (out[first][0], joined)


def unescape_value(value: str) -> str:
    """Envoy header values are formatter strings; ``%%`` is a literal ``%``."""
    return value.replace("%%", "%") if "%%" in value else value


# --------------------------------------------------------------------------- paths


@dataclass(frozen=True, slots=True, kw_only=True)
class FullPath:
    """Replace the whole path."""

    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PrefixReplace:
    """Replace the matched prefix."""

    prefix: str
    """Matched prefix without trailing "/" ("" for the root prefix)."""
    replacement: str
    """Replacement without trailing "/" ("" for "/" or empty)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RegexReplace:
    """Replace every match of `pattern` in the path with `template`."""

    pattern: re.Pattern[str]
    template: str
    """Python `re.sub` template translated from the RE2 substitution."""
    substitution: str
    """The RE2 substitution as received (for explain output)."""


PathRewrite = FullPath | PrefixReplace | RegexReplace


def rewrite_path(plan: PathRewrite, path: str) -> str:
    """Apply `plan` to `path` (no query); an empty result becomes "/"."""
    if isinstance(plan, FullPath):
        return plan.value
    if isinstance(plan, PrefixReplace):
        prefix = plan.prefix
        if not path.startswith(prefix):
            # Cannot happen for the route that matched; keep the request unchanged.
            return path
        return plan.replacement + path[len(prefix) :] or "/"
    return plan.pattern.sub(plan.template, path) or "/"


def strip_trailing_slash(value: str) -> str:
    """``/foo/`` -> ``/foo``; ``/`` -> ``""``."""
    return value.rstrip("/")


def re2_template(substitution: str, *, groups: int) -> str:
    """Translate an RE2 substitution (``\\1``, ``\\\\``) into a Python `re.sub` template.

    Raises ValueError for a reference to a group the pattern lacks or a stray backslash.
    """
    out: list[str] = []
    i = 0
    while i < len(substitution):
        ch = substitution[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = substitution[i + 1 : i + 2]
        if nxt.isdigit():
            if int(nxt) > groups:
                raise ValueError(f"substitution refers to group {nxt}, pattern has {groups}")
            out.append(f"\\g<{nxt}>")
        elif nxt == "\\":
            out.append("\\\\")
        else:
            raise ValueError(f"invalid escape {substitution[i : i + 2]!r} in substitution")
        i += 2
    return "".join(out)
