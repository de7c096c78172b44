"""Per-route filter configs as the translator sends them: bare, or in a `FilterConfig`
wrapper (`is_optional`, `disabled`), which the proxy unwraps instead of rejecting the table."""

from __future__ import annotations

import pytest
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from google.protobuf import any_pb2, wrappers_pb2

from tests.proxy.builders import LISTENER, mk_route, mk_table
from turnout.engine import ir
from turnout.engine.xds.filters import cors_per_route
from turnout.proxy import RequestInfo, TableError

CORS_KEY = "envoy.filters.http.cors"
GET = RequestInfo(method="GET", authority="web.shop:80", path="/")


def _pack(msg: object) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(msg)  # type: ignore[arg-type]
    return out


def _policy() -> cors_pb2.CorsPolicy:
    return cors_pb2.CorsPolicy(
        allow_methods="GET", allow_credentials=wrappers_pb2.BoolValue(value=False)
    )


def _with(key: str, config: any_pb2.Any) -> rc.Route:
    route = mk_route()
    route.typed_per_filter_config[key].CopyFrom(config)
    return route


def test_the_translators_cors_config_is_read_back() -> None:
    cors = ir.CorsFilter(allow_origins=("https://*.example.com",), allow_methods=("GET", "PUT"))
    d = mk_table(_with(CORS_KEY, cors_per_route(cors))).decide(GET, listener=LISTENER)
    assert d.cors is not None and d.cors.allow_methods == ("GET", "PUT")
    assert any(p.fullmatch("https://a.example.com") for p in d.cors.allow_origins)


@pytest.mark.parametrize("optional", [True, False])
def test_a_wrapped_policy_is_unwrapped(optional: bool) -> None:
    wrapped = _pack(rc.FilterConfig(config=_pack(_policy()), is_optional=optional))
    d = mk_table(_with(CORS_KEY, wrapped)).decide(GET, listener=LISTENER)
    assert d.cors is not None and d.cors.allow_methods == ("GET",)


def test_a_disabled_filter_is_off_for_the_route() -> None:
    wrapped = _pack(rc.FilterConfig(config=_pack(_policy()), disabled=True))
    d = mk_table(_with(CORS_KEY, wrapped)).decide(GET, listener=LISTENER)
    assert d.cors is None


def test_an_unknown_optional_filter_is_ignored_and_a_required_one_rejected() -> None:
    optional = _pack(rc.FilterConfig(config=_pack(_policy()), is_optional=True))
    assert mk_table(_with("example.unknown", optional)).decide(GET, listener=LISTENER).cors is None
    with pytest.raises(TableError, match="unsupported filter"):
        mk_table(_with("example.unknown", _pack(_policy())))


def test_a_wrapper_of_the_wrong_type_names_the_field() -> None:
    wrapped = _pack(rc.FilterConfig(config=_pack(wrappers_pb2.BoolValue()), is_optional=True))
    with pytest.raises(TableError, match=r"want envoy.extensions.filters.http.cors.v3.CorsPolicy"):
        mk_table(_with(CORS_KEY, wrapped))
