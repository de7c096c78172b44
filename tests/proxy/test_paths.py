"""Paths in normal form (`paths.py`): what a route or a policy on ``/admin`` matches is what
the backend gets, whatever the spelling (RFC 3986 §5.2.4 and §6.2.2, Envoy's
`normalize_path` + `merge_slashes`, escaped slashes refused).

The table-level side: `RequestInfo` (what `mesh routes explain` and `mesh test` send) and
the runtime table see the normalized path, and route values are normalized as requests
are. The proxy end to end is `tests/proxy/e2e/test_paths.py`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import cast
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.proxy.builders import LISTENER, by_precedence, mk_match, mk_route, mk_table
from tests.proxy.e2e.harness import httproute, service_yaml
from turnout.cli.offline import OfflineMesh, Request, Via
from turnout.engine.pipeline import compile_files
from turnout.proxy import DirectResponse, RequestInfo, TableError
from turnout.proxy.matching import PathCondition
from turnout.proxy.paths import Refusal, normalize_any, normalize_path, normalize_request
from turnout.proxy.transport.messages import IncomingRequest, RequestBody

ADMIN = PathCondition(kind="PathPrefix", value="/admin", with_slash="/admin/")
"""What a policy (or a route) on ``PathPrefix /admin`` tests a request's path with."""

NORMALIZED = [
    pytest.param("/", "/", id="root"),
    pytest.param("/api/vote", "/api/vote", id="normal"),
    pytest.param("/public/../admin", "/admin", id="dot-dot"),
    pytest.param("//admin", "/admin", id="double-slash"),
    pytest.param("/public//admin", "/public/admin", id="inner-double-slash"),
    pytest.param("/public/%2e%2e/admin", "/admin", id="encoded-dot-dot"),
    pytest.param("/public/%2E%2e/admin", "/admin", id="encoded-dot-dot-mixed-case"),
    pytest.param("/public/.%2e/admin", "/admin", id="half-encoded-dot-dot"),
    pytest.param("/admin/.", "/admin/", id="trailing-dot"),
    pytest.param("/admin/x/..", "/admin/", id="trailing-dot-dot"),
    pytest.param("/./admin", "/admin", id="leading-dot"),
    pytest.param("/admin/..", "/", id="up-to-the-root"),
    pytest.param("/.", "/", id="root-dot"),
    pytest.param("\\admin", "/admin", id="backslash"),
    pytest.param("\\\\admin", "/admin", id="two-backslashes"),
    pytest.param("/public\\..\\admin", "/admin", id="backslash-dot-dot"),
    pytest.param("/%61dmin", "/admin", id="unreserved-escape"),
    pytest.param("/%7Euser/%2D%5F", "/~user/-_", id="unreserved-punctuation"),
    pytest.param("/a%3ab", "/a%3Ab", id="reserved-escape-kept-upper-case"),
    pytest.param("/a%20b", "/a%20b", id="space-escape-kept"),
    pytest.param("/.well-known/x", "/.well-known/x", id="dot-file"),
    pytest.param("/a/.../b", "/a/.../b", id="three-dots-is-a-name"),
    pytest.param("/admin;x=1", "/admin;x=1", id="path-parameter-kept"),
]

REFUSED = [
    pytest.param("/a/../../etc/passwd", "above the root", id="above-root"),
    pytest.param("/..", "above the root", id="root-dot-dot"),
    pytest.param("/%2e%2e/admin", "above the root", id="encoded-above-root"),
    pytest.param("/admin%2Fsecret", "escaped slash", id="escaped-slash"),
    pytest.param("/public%2f..%2fadmin", "escaped slash", id="escaped-slash-lower-case"),
    pytest.param("/%5Cadmin", "escaped slash", id="escaped-backslash"),
    pytest.param("/%5cadmin", "escaped slash", id="escaped-backslash-lower-case"),
    pytest.param("/admin#x", "fragment", id="fragment"),
    pytest.param("/a%00b", "NUL", id="nul-escape"),
    pytest.param("/a%zzb", "malformed", id="bad-escape"),
    pytest.param("/a%2", "malformed", id="short-escape"),
    pytest.param("/%%32%65%%32%65/admin", "malformed", id="nested-escape"),
    pytest.param("*", "not a path", id="asterisk-form"),
    pytest.param("http://web/admin", "not a path", id="absolute-form"),
    pytest.param("admin", "not a path", id="no-leading-slash"),
]


@pytest.mark.parametrize(("path", "normal"), NORMALIZED)
def test_paths_are_normalized(path: str, normal: str) -> None:
    assert normalize_path(path) == normal
    assert normalize_path(normal) == normal  # and stay so


@pytest.mark.parametrize(("path", "why"), REFUSED)
def test_paths_that_cannot_be_normalized_are_refused_with_a_400(path: str, why: str) -> None:
    got = normalize_path(path)
    assert isinstance(got, Refusal)
    assert why in got.reason
    assert got.answer.status == 400
    assert ("l5d-proxy-error", "invalid path") in got.answer.headers
    assert got.answer.body == f"invalid path: {got.reason}\n".encode()


@pytest.mark.parametrize("path", ["/", "/api/vote", "/emojivoto.v1.EmojiService/ListAll"])
def test_a_normal_path_is_returned_as_it_is_not_copied(path: str) -> None:
    copy = "".join(path)  # a new object, as the parser makes one per request
    assert normalize_path(copy) is copy


def test_paths_from_elsewhere_get_what_a_request_line_cannot_carry_escaped() -> None:
    assert normalize_any("/a b/é\t") == "/a%20b/%C3%A9%09"
    assert normalize_any("/a/../b c") == "/b%20c"
    assert isinstance(normalize_any("/a\0b"), Refusal)


def incoming(target: str) -> IncomingRequest:
    path, _, query = target.partition("?")
    return IncomingRequest(
        "GET", target, path, query, [(b"host", b"web")], "web", "1.1", True,
        cast(RequestBody, None), ("127.0.0.1", 40000), ("127.0.0.1", 4140), None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("target", "path", "forwarded"),
    [
        ("/a/../b?x=/../%2F#", "/b", "/b?x=/../%2F#"),
        ("/a/..?", "/", "/?"),
        ("//admin?q", "/admin", "/admin?q"),
        ("/plain?q=1", "/plain", "/plain?q=1"),
    ],
)
def test_a_request_is_normalized_in_place_and_its_query_kept_as_sent(
    target: str, path: str, forwarded: str
) -> None:
    req = incoming(target)
    assert normalize_request(req) is None
    assert (req.path, req.target) == (path, forwarded)


BYPASSES = [
    "/admin",
    "/public/../admin",
    "//admin",
    "///admin/x",
    "/public/%2e%2e/admin",
    "/public/%2E%2e/admin",
    "/admin/.",
    "/./admin",
    "\\admin",
    "\\\\admin",
    "/public\\..\\admin",
    "/%61dmin/x",
    "/adm%69n",
    "/%2e%2e/admin",
    "/admin%2Fx",
    "/public%2F..%2Fadmin",
    "/public%2f..%2fadmin",
    "/%5Cadmin",
    "/a/../../admin",
    "/admin#",
]


@pytest.mark.parametrize("target", BYPASSES)
def test_a_policy_on_admin_sees_every_spelling_of_admin_or_the_request_is_refused(
    target: str,
) -> None:
    """What authorization will do: `normalize_request` first, then match `req.path`."""
    req = incoming(target)
    refusal = normalize_request(req)
    assert refusal is not None or ADMIN.matches(req.path), (target, req.path)


def _backend_view(path: str) -> str | None:
    """What a backend that decodes every escape, takes "\\" for "/" and resolves dot
    segments (posix style, above the root an error) serves; None: it refuses it."""
    decoded = unquote(path).replace("\\", "/")
    out: list[str] = []
    for seg in decoded.split("/")[1:]:
        if seg in ("", "."):
            continue
        if seg == "..":
            if not out:
                return None
            out.pop()
        else:
            out.append(seg)
    return "/" + "/".join(out)


SEGMENTS = ["admin", "public", "x", ".", "..", "", "%2e", "%2E%2e", ".%2e", "%61dmin", "adm%69n"]
SEPARATORS = ["/", "//", "\\"]


@st.composite
def spellings(draw: st.DrawFn) -> str:
    segments = draw(st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=6))
    seps = draw(st.lists(st.sampled_from(SEPARATORS), min_size=len(segments), max_size=6))
    return "".join(sep + seg for sep, seg in zip(seps, segments, strict=False))


@settings(max_examples=400, deadline=None)
@given(spellings())
def test_what_matches_admin_is_what_a_decoding_backend_serves_as_admin(path: str) -> None:
    """Property: no spelling reaches /admin at the backend without matching /admin here,
    normalizing twice changes nothing, and the forwarded path means the same to the
    backend as the one sent."""
    normal = normalize_path(path)
    served = _backend_view(path)
    if isinstance(normal, Refusal):
        assert served is None or "above the root" not in normal.reason
        return
    assert normalize_path(normal) == normal
    assert served is not None
    assert _backend_view(normal) == served
    assert ADMIN.matches(normal) == ADMIN.matches(served)


# -- the runtime table and the offline mesh ------------------------------------------------

TABLE = mk_table(
    *(
        mk_route(m)
        for m in by_precedence([mk_match("admin", prefix="/admin"), mk_match("public", prefix="/")])
    )
)


@pytest.mark.parametrize("path", BYPASSES)
def test_the_runtime_table_routes_every_spelling_of_admin_to_the_admin_route(path: str) -> None:
    request = RequestInfo(method="GET", authority="web", path=path)
    winner = TABLE.explain(request, listener=LISTENER).winner
    if request.refusal is not None:
        assert isinstance(winner.action, DirectResponse) and winner.action.status == 400
        return
    assert winner.route is not None and winner.route.name == "admin", (path, request.path)
    assert winner == TABLE.decide(request, listener=LISTENER)


def test_explain_names_the_normalized_path_in_its_reasons() -> None:
    request = RequestInfo(method="GET", authority="web", path="/admin/../public/x")
    verdicts = TABLE.explain(request, listener=LISTENER).verdicts
    assert verdicts[0].reason == "path /public/x does not match PathPrefix /admin"


def test_explain_says_why_a_path_is_refused() -> None:
    request = RequestInfo(method="GET", authority="web", path="/a/../../etc/passwd")
    ex = TABLE.explain(request, listener=LISTENER)
    assert ex.host_reason == (
        "path '/a/../../etc/passwd' refused before routing: the path goes above the root (..)"
    )
    assert isinstance(ex.winner.action, DirectResponse)
    assert (ex.winner.action.status, ex.winner.action.answer.cause) == (400, "invalid path")


@pytest.mark.parametrize(
    ("match", "value"),
    [
        pytest.param(mk_match("m", exact="/%61dmin"), "/admin", id="exact"),
        pytest.param(mk_match("m", prefix="/a%3ab"), "/a%3Ab", id="prefix"),
    ],
)
def test_route_values_are_normalized_as_requests_are(match: object, value: str) -> None:
    table = mk_table(mk_route(match))  # type: ignore[arg-type]
    (route,) = table.route_configs[LISTENER][0].index.routes
    assert route.matcher.path.value == value
    request = RequestInfo(method="GET", authority="web", path=value.replace("%3A", "%3a"))
    assert table.decide(request, listener=LISTENER).route is not None


def test_a_route_value_no_request_can_have_is_a_table_error() -> None:
    with pytest.raises(TableError, match=re.escape("can never match: an escaped slash")):
        mk_table(mk_route(mk_match("m", exact="/a%2Fb")))


ROUTES = "\n---\n".join(
    [
        service_yaml("web", []),
        service_yaml("admin", []),
        httproute(
            """
  - matches: [{path: {type: PathPrefix, value: /admin}}]
    backendRefs: [{name: admin, port: 80}]
  - backendRefs: [{name: web, port: 80}]
"""
        ),
    ]
)


@pytest.mark.parametrize(
    ("url", "status", "service", "forwarded"),
    [
        ("http://web/public/../admin?x=/../", 200, "shop/admin", "/admin?x=/../"),
        ("http://web//admin", 200, "shop/admin", "/admin"),
        ("http://web/public/%2e%2e/admin/x", 200, "shop/admin", "/admin/x"),
        ("http://web/admin/../public", 200, "shop/web", "/public"),
        ("http://web/a/../../etc/passwd", 400, None, None),
        ("http://web/public%2F..%2Fadmin", 400, None, None),
    ],
)
def test_the_offline_mesh_sends_the_normalized_path(
    tmp_path: Path, url: str, status: int, service: str | None, forwarded: str | None
) -> None:
    """`mesh routes explain` and `mesh test` (OfflineMesh) see what the proxy would do."""
    f = tmp_path / "routes.yaml"
    f.write_text(ROUTES)
    mesh = OfflineMesh(compile_files([str(f)]).result.table)
    via = Via(kind="Service", namespace="shop", name="web", port=80)
    outcome = mesh.send(via, Request(method="GET", url=url))
    assert outcome.status == status
    if service is None:
        assert outcome.backends == ()
        return
    (backend,) = outcome.live_backends
    assert backend.service == service
    assert backend.upstream is not None and backend.upstream.path_and_query == forwarded
