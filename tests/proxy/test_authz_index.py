"""The proxy's rule index (`authz.Candidates`) answers exactly as testing every rule in
order would: the first matching rule in decision order wins, whether it is a scanned rule, an
exact-identity rule answered by lookup, or a rule keyed by identity, principal or service
account; a client no key names only meets the scanned rules."""

from __future__ import annotations

from typing import Any

import pytest

from turnout.proxy.authz import Caller, Candidates, Req, Rule

WEB = "web.shop.serviceaccount.identity.cluster.local"
API = "api.shop.serviceaccount.identity.cluster.local"


def rule(name: str, peer: dict[str, Any], **rest: Any) -> Rule:
    return Rule({"name": name, "peers": [peer], **rest})


NETWORK = {"networks": [{"cidr": "10.0.0.0/8"}]}
EXACT = {"tls": "authenticated", "identities": [{"type": "ExactIdentity", "value": WEB}]}
ACCOUNT = {"identities": [{"type": "ServiceAccountIdentity", "namespace": "shop", "name": "web"}]}
PRINCIPAL = {
    "identities": [
        {
            "type": "PrincipalMatch",
            "match": {"kind": "exact", "value": "cluster.local/ns/shop/sa/web"},
        }
    ]
}
GET = {"operations": [{"methods": [{"kind": "exact", "value": "GET"}]}]}


def first(rules: list[Rule], identity: str | None, ip: str = "10.1.2.3") -> str | None:
    caller = Caller.of(ip, tls=identity is not None, identity=identity)
    req = Req(method="GET", path="/", host="api", headers={})
    got = Candidates(rules).first(caller, 8080, req)
    want = next((r for r in rules if r.matches(caller, 8080, req)), None)
    assert got is want  # the index never changes which rule wins
    return None if got is None else got.name


@pytest.mark.parametrize(
    "rules",
    [
        [rule("net", NETWORK), rule("exact", EXACT), rule("sa", ACCOUNT, **GET)],
        [rule("exact", EXACT), rule("net", NETWORK), rule("pr", PRINCIPAL, **GET)],
        [rule("sa", ACCOUNT, **GET), rule("pr", PRINCIPAL), rule("net", NETWORK)],
        [rule("pr", PRINCIPAL), rule("sa", ACCOUNT), rule("exact", EXACT)],
    ],
    ids=["scan-first", "lookup-first", "keyed-first", "two-keys"],
)
def test_the_first_rule_in_order_wins(rules: list[Rule]) -> None:
    assert first(rules, WEB) == rules[0].name
    assert first(rules, WEB, ip="192.0.2.1") is not None
    stranger = first(rules, API)  # no key names api: only the scanned network rule
    assert stranger == ("net" if any(r.name == "net" for r in rules) else None)
    assert first(rules, None, ip="192.0.2.1") is None


def test_rules_are_indexed_not_scanned() -> None:
    c = Candidates([rule("sa", ACCOUNT, **GET), rule("pr", PRINCIPAL), rule("net", NETWORK)])
    assert [r.name for _, r in c.rules] == ["net"]
    assert set(c.keyed) == {("sa", "shop/web"), ("pr", "cluster.local/ns/shop/sa/web")}
