"""Envoy's documented request semantics, re-done in Python to check what `translate` emits.

Only what the tests need: does a `RouteMatch` path specifier match a path, and what path does
a `RouteAction`/`RedirectAction` rewrite produce (`prefix_rewrite` replaces the matched prefix;
`regex_rewrite` is RE2 GlobalReplace on the path without the query string).
"""

from __future__ import annotations

import re

from envoy.config.route.v3 import route_components_pb2 as rc


def path_matches(match: rc.RouteMatch, path: str) -> bool:
    which = match.WhichOneof("path_specifier")
    if which == "prefix":
        return path.startswith(str(match.prefix))
    if which == "path_separated_prefix":
        prefix = str(match.path_separated_prefix)
        return path == prefix or path.startswith(prefix + "/")
    if which == "path":
        return path == str(match.path)
    if which == "safe_regex":
        return re.fullmatch(match.safe_regex.regex, path) is not None
    raise AssertionError(f"unexpected path specifier {which}")


def matched_prefix_length(match: rc.RouteMatch) -> int:
    which = match.WhichOneof("path_specifier")
    if which == "prefix":
        return len(match.prefix)
    if which == "path_separated_prefix":
        return len(match.path_separated_prefix)
    raise AssertionError(f"prefix_rewrite needs a prefix match, got {which}")


def rewritten_path(route: rc.Route, path: str) -> str:
    """The path Envoy forwards (or redirects to) for `path` under `route`."""
    assert path_matches(route.match, path), f"{path} does not match {route.match}"
    action = route.redirect if route.HasField("redirect") else route.route
    if route.HasField("redirect") and route.redirect.path_redirect:
        return str(route.redirect.path_redirect)
    if action.prefix_rewrite:
        return str(action.prefix_rewrite) + path[matched_prefix_length(route.match) :]
    if action.HasField("regex_rewrite"):
        pattern = action.regex_rewrite.pattern.regex
        return re.sub(pattern, action.regex_rewrite.substitution, path)
    return path
