"""Request heads for upstreams (`transport.heads`): headers the client's `Connection`
header names are this hop's only (RFC 9110 §7.6.1) and never reach the backend, whether
the request goes on as it came (`encode_forward_head`) or through filters
(`encode_request_head`)."""

from __future__ import annotations

import pytest

from turnout.proxy.transport.heads import encode_forward_head, encode_request_head
from turnout.proxy.transport.messages import HOP_BY_HOP_BYTES

FRAMING = "content-length: 0\r\n"


def names(head: bytes) -> list[bytes]:
    return [line.split(b":", 1)[0].lower() for line in head.split(b"\r\n")[1:] if line]


@pytest.mark.parametrize(
    "connection",
    [b"x-secret", b"keep-alive, X-Secret", b"X-SECRET,x-other", b" x-secret , close"],
)
def test_a_forwarded_request_loses_the_headers_its_connection_header_names(
    connection: bytes,
) -> None:
    headers = [(b"X-Secret", b"1"), (b"Connection", connection), (b"x-other", b"2")]
    headers.append((b"x-kept", b"3"))
    head = encode_forward_head("GET", "/", headers, host="web", framing=FRAMING)
    assert b"x-secret" not in names(head) and b"connection" not in names(head)
    assert b"x-kept" in names(head)
    assert (b"x-other" in names(head)) is (b"x-other" not in connection.lower())


def test_a_filtered_request_loses_them_too() -> None:
    headers = (("x-secret", "1"), ("connection", "x-secret"), ("x-kept", "3"))
    head = encode_request_head("GET", "/", headers, host="web", framing=FRAMING)
    assert names(head) == [b"host", b"x-kept", b"content-length"]


@pytest.mark.parametrize("connection", [b"keep-alive", b"close", b"Upgrade", b""])
def test_connection_keywords_name_nothing(connection: bytes) -> None:
    headers = [(b"Connection", connection), (b"Keep-Alive", b"timeout=5"), (b"x-kept", b"3")]
    head = encode_forward_head("GET", "/", headers, host="web", framing=FRAMING)
    assert names(head) == [b"host", b"content-length", b"x-kept"]


def test_the_names_passed_on_unread_are_none_the_proxy_reads_or_drops() -> None:
    """`heads.ORDINARY_NAMES` skip the listener's checks (Host, framing, Expect, Upgrade,
    Connection, the mesh headers) and the forward head's hop-by-hop filter: a special name
    in it would reopen smuggling and duplicate-Host holes, in any of its spellings."""
    from turnout.proxy.transport import heads, server

    assert heads.ORDINARY_NAMES
    lowered = {name.lower() for name in heads.ORDINARY_NAMES}
    assert not lowered & (server.MESH_READ_NAMES | HOP_BY_HOP_BYTES)
    head = encode_forward_head(
        "GET", "/", [(n, b"v") for n in sorted(heads.ORDINARY_NAMES)], host="a", framing=""
    )
    assert sorted(names(head)) == sorted([b"host", *(n.lower() for n in heads.ORDINARY_NAMES)])
