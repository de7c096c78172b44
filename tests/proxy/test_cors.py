"""`turnout.proxy.cors`: the CORS headers of a route's policy for one request, per the
HTTPRoute CORS filter's rules (GEP-1767) on wildcards and credentials."""

from __future__ import annotations

import re

import pytest

from turnout.proxy.actions import Cors
from turnout.proxy.cors import actual, for_request

ORIGIN = "https://app.example.com"


def policy(**kw: object) -> Cors:
    return Cors(allow_origins=(re.compile(r"https://.*\.example\.com"),), **kw)  # type: ignore[arg-type]


def preflight_of(cors: Cors, *extra: tuple[bytes, bytes]) -> dict[str, str]:
    raw = [(b"Origin", ORIGIN.encode()), (b"Access-Control-Request-Method", b"PUT"), *extra]
    answer, added = for_request(cors, "OPTIONS", raw)
    assert answer is not None and added == []
    return dict(answer)


@pytest.mark.parametrize(("creds", "want"), [(False, "*"), (True, "PUT")])
def test_a_wildcard_method_is_echoed_when_credentials_are_allowed(creds: bool, want: str) -> None:
    got = preflight_of(policy(allow_methods=("*",), allow_credentials=creds))
    assert got["access-control-allow-methods"] == want


@pytest.mark.parametrize(("creds", "want"), [(False, "*"), (True, "x-a, x-b")])
def test_wildcard_headers_are_echoed_when_credentials_are_allowed(creds: bool, want: str) -> None:
    asked = (b"Access-Control-Request-Headers", b"x-a, x-b")
    got = preflight_of(policy(allow_headers=("*",), allow_credentials=creds), asked)
    assert got["access-control-allow-headers"] == want


def test_with_credentials_and_no_headers_asked_allow_headers_is_left_out() -> None:
    got = preflight_of(policy(allow_headers=("*",), allow_credentials=True))
    assert "access-control-allow-headers" not in got
    assert got["access-control-allow-credentials"] == "true"
    assert got["access-control-allow-origin"] == ORIGIN and got["vary"] == "Origin"


@pytest.mark.parametrize(("creds", "want"), [(False, "*"), (True, None)])
def test_wildcard_expose_headers_are_never_sent_with_credentials(
    creds: bool, want: str | None
) -> None:
    got = dict(actual(policy(expose_headers=("*",), allow_credentials=creds), ORIGIN))
    assert got.get("access-control-expose-headers") == want


def test_an_origin_that_does_not_match_gets_no_cors_headers() -> None:
    cors = policy(allow_methods=("GET",), expose_headers=("x-a",))
    raw = [(b"Origin", b"https://evil.test"), (b"Access-Control-Request-Method", b"GET")]
    assert for_request(cors, "OPTIONS", raw) == ([], [])
    assert for_request(cors, "GET", raw[:1]) == (None, [])
