"""What a connection's first bytes are, peeked before any protocol runs (`detect.py`).

```
first_bytes(head)        outbound --transparent: "http1" (TOKEN SP: a request line),
                         "h2" (PRI * HTTP/2.0), "tls" (16 03), "other"; None: too few yet
is_client_hello(head)    inbound: a TLS handshake record holding a ClientHello
client_hello_sni(record) inbound: the server name it asks for (another than the proxy's
                         identity: the app's own TLS, passed through)
```

Pure functions of bytes; nothing here touches a socket.
"""

from __future__ import annotations

from typing import Literal

H2_PREFACE = b"PRI * HTTP/2.0\r\n"
"""The first 16 bytes of HTTP/2 with prior knowledge (RFC 9113 §3.4): gRPC's h2c."""
FIRST_BYTES = len(H2_PREFACE)
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

Detected = Literal["http1", "h2", "tls", "other"]


def first_bytes(head: bytes) -> Detected | None:
    """What a client's first (up to `FIRST_BYTES`) bytes are; None: too few to tell yet.

    ``http1``: a method token then a space (a request line); ``h2``: the HTTP/2 preface;
    ``tls``: a handshake record (``16 03``, the app's own TLS); ``other``: anything else."""
    if not head:
        return None
    if head[0] == 0x16:
        return None if len(head) < 2 else "tls" if head[1] == 0x03 else "other"
    if H2_PREFACE.startswith(head) and len(head) < FIRST_BYTES:
        return None
    if head.startswith(H2_PREFACE):
        return "h2"
    space = head.find(b" ")
    method = head if space < 0 else head[:space]
    if not all(b in _TOKEN for b in method):
        return "other"
    if space > 0:
        return "http1"
    return None if len(head) < FIRST_BYTES else "other"


MAX_RECORD = 5 + 16_384
"""A TLS record's header plus its largest plaintext (RFC 8446 §5.1)."""


def is_client_hello(head: bytes) -> bool:
    """The first 6 bytes are a TLS handshake record (version 3.1-3.4) with a ClientHello."""
    return (
        len(head) >= 6
        and head[0] == 0x16
        and head[1] == 0x03
        and 1 <= head[2] <= 4
        and head[5] == 0x01
    )


def client_hello_sni(record: bytes) -> str | None:
    """The server name a ClientHello asks for (its ``server_name`` extension), read from
    its first record; None: none, or not within the bytes given."""
    try:
        i = 5 + 4 + 2 + 32  # record header, handshake header, version, random
        i += 1 + record[i]  # session id
        i += 2 + int.from_bytes(record[i : i + 2])  # cipher suites
        i += 1 + record[i]  # compression methods
        end = min(len(record), i + 2 + int.from_bytes(record[i : i + 2]))
        i += 2
        while i + 4 <= end:
            kind, size = int.from_bytes(record[i : i + 2]), int.from_bytes(record[i + 2 : i + 4])
            i += 4
            if kind == 0 and record[i + 2] == 0:  # server_name, first entry a host_name
                length = int.from_bytes(record[i + 3 : i + 5])
                name = record[i + 5 : i + 5 + length]
                return name.decode("ascii") if len(name) == length else None
            i += size
    except (IndexError, UnicodeDecodeError):
        return None
    return None
