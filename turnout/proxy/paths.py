"""Request paths in one normal form, so what a route (or a policy) matches is what is forwarded.

```
request path ──normalize_path──> the same str        already normal: one fast check, no copy
                               ├─> "/a/b"            normalized (forwarded so, query untouched)
                               └─> Refusal            400, l5d-proxy-error: invalid path
 1. origin-form only: the path starts with "/" (or "\\"); "*" and "http://..." are refused
 2. "#" is refused: a fragment is no part of a request-target (Envoy's default since 1.19)
 3. percent-escapes (RFC 3986 §6.2.2): %2F %2f %5C %5c are refused (Envoy's
    path_with_escaped_slashes_action REJECT_REQUEST), so are %00 and malformed escapes;
    unreserved ones (ALPHA DIGIT - . _ ~) are decoded, the others kept with upper-case hex
 4. "\\" is "/" (Envoy's normalize_path: Chromium's URL canonicalizer does the same)
 5. slashes merged (Envoy's merge_slashes), dot segments removed (§5.2.4; "%2e" is a dot);
    a ".." above the root is refused (nginx answers 400; Envoy would stop at "/")
normalize_request(req)   the same on a request: `path` and `target` replaced, in place
normalize_any(path)      for paths from elsewhere (`RequestInfo`): spaces, control and
                         non-ASCII characters percent-encoded first (NUL refused)
```

Why refuse rather than redirect an escaped slash (UNESCAPE_AND_REDIRECT) or keep it (KEEP):
kept, ``/public%2F..%2Fadmin`` matches a route on ``/`` and reaches a backend that decodes it
to ``/admin``; a redirect changes the resource for APIs that mean ``%2F`` inside a segment
and is lost on clients that do not follow redirects. A 400 says what is wrong, once.

The fast check relies on the HTTP/1 parser (llhttp), which lets no space, control or
non-ASCII byte into a request-target. Not here: `;` path parameters (Tomcat's
``/admin;x``), case folding, matching itself (`matching.py`).
"""

from __future__ import annotations

import logging
import string
from dataclasses import dataclass, field

from turnout.proxy.answers import Answer
from turnout.proxy.transport.messages import IncomingRequest

log = logging.getLogger(__name__)

INVALID_PATH = "invalid path"
"""The ``l5d-proxy-error`` value of a refused path."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a path is refused, and the 400 the proxy answers for it (built once)."""

    reason: str
    answer: Answer = field(init=False, repr=False, compare=False)
    """400, ``l5d-proxy-error: invalid path``, the reason in the body."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "answer", Answer(400, INVALID_PATH, detail=self.reason))


NOT_ORIGIN_FORM = Refusal("the request-target is not a path starting with /")
FRAGMENT = Refusal("a fragment (#) is no part of a request-target")
ESCAPED_SLASH = Refusal("an escaped slash (%2F or %5C) in the path")
BAD_ESCAPE = Refusal("a malformed percent-escape in the path")
NUL = Refusal("a NUL (%00) in the path")
ABOVE_ROOT = Refusal("the path goes above the root (..)")

_HEX = frozenset("0123456789abcdefABCDEF")
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")


def normalize_path(path: str) -> str | Refusal:
    """`path` (no query) in normal form, the same object when it already is; or why not.

    `path` comes from the HTTP/1 parser: visible ASCII only (see `normalize_any` else)."""
    if (
        path[:1] == "/"
        and "%" not in path
        and "//" not in path
        and "/." not in path
        and "\\" not in path
        and "#" not in path
    ):
        return path
    normal = _normalize(path)
    return path if normal == path else normal  # e.g. "/.well-known": normal all along


def normalize_request(req: IncomingRequest) -> Refusal | None:
    """Normalize `req.path` in place (and `req.target`, its query as sent); None when the
    path is fine (now), else why it is refused (the request is left as it came)."""
    path = req.path
    normal = normalize_path(path)
    if normal is path:
        return None
    if isinstance(normal, Refusal):
        return normal
    req.target = normal + req.target[len(path) :]
    req.path = normal
    return None


def normalize_any(path: str) -> str | Refusal:
    """`normalize_path` for a path that did not come through the HTTP/1 parser: characters
    a request line cannot carry (space, controls, non-ASCII) are percent-encoded first."""
    if not (path.isascii() and path.isprintable() and " " not in path):
        if "\0" in path:
            return NUL
        path = "".join(
            c if "!" <= c <= "~" else "".join(f"%{b:02X}" for b in c.encode()) for c in path
        )
    return normalize_path(path)


def _normalize(path: str) -> str | Refusal:
    if path[:1] not in ("/", "\\"):
        return NOT_ORIGIN_FORM
    if "#" in path:
        return FRAGMENT
    if "%" in path:
        decoded = _decode(path)
        if isinstance(decoded, Refusal):
            return decoded
        path = decoded
    if "\\" in path:
        path = path.replace("\\", "/")
    segments = path.split("/")
    kept: list[str] = []
    for segment in segments[1:]:
        if segment in ("", "."):
            continue
        if segment == "..":
            if not kept:
                return ABOVE_ROOT
            kept.pop()
            continue
        kept.append(segment)
    # "/a/", "/a/b/." and "/a/b/.." all end in a directory: keep the trailing "/"
    trailing = bool(kept) and segments[-1] in ("", ".", "..")
    return "/" + "/".join(kept) + ("/" if trailing else "")


def _decode(path: str) -> str | Refusal:
    """Decode the unreserved percent-escapes (§6.2.2.2), upper-case the others (§6.2.2.1).

    Decoded characters are never "%", so the result holds no escape that was not one
    already: normalizing twice changes nothing."""
    parts = path.split("%")
    out = [parts[0]]
    for part in parts[1:]:
        if len(part) < 2 or part[0] not in _HEX or part[1] not in _HEX:
            return BAD_ESCAPE
        char = chr(int(part[:2], 16))
        if char in "/\\":
            return ESCAPED_SLASH
        if char == "\0":
            return NUL
        out.append(char if char in _UNRESERVED else "%" + part[:2].upper())
        out.append(part[2:])
    return "".join(out)
