"""Tables from HTTPROUTE-SEMANTICS that several stages' tests check (xDS and proxy alike)."""

from __future__ import annotations

REPLACE_PREFIX_TABLE: list[tuple[str, str, str, str]] = [
    # "This reproduces every row of the API table" (§7.4): request, prefix, replace, result.
    ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
    ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
    ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
    ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
    ("/foo", "/foo", "/xyz", "/xyz"),
    ("/foo/", "/foo", "/xyz", "/xyz/"),
    ("/foo/bar", "/foo", "", "/bar"),
    ("/foo/", "/foo", "", "/"),
    ("/foo", "/foo", "", "/"),
    ("/foo/", "/foo", "/", "/"),
    ("/foo", "/foo", "/", "/"),
    # Conf HTTPRouteRewritePath
    ("/prefix/one/two", "/prefix/one", "/one", "/one/two"),
    ("/strip-prefix/three", "/strip-prefix", "/", "/three"),
    ("/strip-prefix", "/strip-prefix", "/", "/"),
]


def table_ids(rows: list[tuple[str, str, str, str]]) -> list[str]:
    return [f"{r}|{p}|{v or 'empty'}" for r, p, v, _ in rows]
