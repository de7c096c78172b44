"""Identity names, SPIFFE ids and TokenReview user names, both ways."""

from __future__ import annotations

import pytest

from turnout.engine.identity.names import (
    ServiceAccount,
    identity_name,
    parse_identity,
    parse_spiffe_id,
    parse_username,
    spiffe_id,
)

WEB = ServiceAccount(namespace="shop", name="web")
DOTTED = ServiceAccount(namespace="ingress", name="nginx.v2")


@pytest.mark.parametrize("sa", [WEB, DOTTED], ids=str)
def test_names_round_trip(sa: ServiceAccount) -> None:
    assert parse_identity(identity_name(sa, "cluster.local"), "cluster.local") == sa
    assert parse_spiffe_id(spiffe_id(sa, "cluster.local"), "cluster.local") == sa
    assert parse_username(sa.username) == sa


def test_the_forms_are_linkerds() -> None:
    assert identity_name(WEB, "cluster.local") == "web.shop.serviceaccount.identity.cluster.local"
    assert spiffe_id(WEB, "cluster.local") == "spiffe://cluster.local/ns/shop/sa/web"
    assert WEB.username == "system:serviceaccount:shop:web"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param("web.shop.svc.cluster.local", "is not of the form", id="service-name"),
        pytest.param(
            "shop.serviceaccount.identity.cluster.local", "is not of the form", id="no-sa"
        ),
        pytest.param(
            "web.Shop.serviceaccount.identity.cluster.local", "not a DNS label", id="uppercase"
        ),
        pytest.param(
            "web.shop.serviceaccount.identity.other", "trust domain cluster.local", id="domain"
        ),
    ],
)
def test_a_name_that_is_not_an_identity_says_why(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_identity(name, "cluster.local")


def test_only_service_account_users_parse() -> None:
    with pytest.raises(ValueError, match="is not a service account"):
        parse_username("system:node:worker-1")
    with pytest.raises(ValueError, match="not of the form"):
        parse_spiffe_id("spiffe://other/ns/a/sa/b", "cluster.local")
