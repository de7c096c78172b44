"""The metrics' ``authority`` (and route ``dst``) is bounded by the table, not chosen by the
client: the domain a virtual host was chosen by, or ``unknown`` (`RuntimeTable.authority_label`).
"""

from __future__ import annotations

import pytest

from tests.proxy.builders import LISTENER, mk_route, mk_table, service_domains
from turnout.proxy.families import UNKNOWN_AUTHORITY

SERVICE = mk_table(mk_route(), domains=(*service_domains(), "*"))
GATEWAY = mk_table(mk_route(), domains=("shop.example", "*.api.example"))


@pytest.mark.parametrize(
    ("table", "host", "label"),
    [
        pytest.param(SERVICE, "web", "web", id="service-name"),
        pytest.param(SERVICE, "web.shop:80", "web.shop:80", id="name-with-port"),
        pytest.param(SERVICE, "WEB.Shop:80", "web.shop:80", id="case-folded"),
        pytest.param(SERVICE, "web.shop:9999", "web.shop", id="other-port-by-the-name"),
        pytest.param(
            SERVICE, "web.shop.svc.cluster.local.", "*", id="trailing-dot-by-the-catch-all"
        ),
        pytest.param(GATEWAY, "shop.example:8443", "shop.example", id="gateway-host"),
        pytest.param(GATEWAY, "a.b.api.example", "*.api.example", id="gateway-wildcard"),
        pytest.param(GATEWAY, "evil.example", UNKNOWN_AUTHORITY, id="no-virtual-host"),
    ],
)
def test_a_host_is_labelled_by_the_domain_it_matched(table: object, host: str, label: str) -> None:
    assert table.authority_label(host, listener=LISTENER) == label  # type: ignore[attr-defined]


def test_a_host_naming_no_listener_of_the_table_is_unknown() -> None:
    assert SERVICE.authority_label("web", listener=None) == UNKNOWN_AUTHORITY
    assert SERVICE.authority_label("db", listener="db.shop.svc.cluster.local:80") == "unknown"


def test_the_labels_of_ten_thousand_hosts_are_the_tables_domains() -> None:
    hosts = [f"h{i}.example" for i in range(5000)] + [f"x{i}.api.example" for i in range(5000)]
    labels = {GATEWAY.authority_label(h, listener=LISTENER) for h in hosts}
    assert labels == {UNKNOWN_AUTHORITY, "*.api.example"}
