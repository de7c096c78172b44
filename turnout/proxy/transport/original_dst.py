"""A redirected connection's original destination: ``SO_ORIGINAL_DST``.

```
iptables REDIRECT (mesh proxy-init) ─► accepted socket, local address 127.0.0.1:4140
original_dst(sock) ─ getsockopt(SOL_IP, SO_ORIGINAL_DST) ─► ("10.96.0.10", 80)
                   ─ IPv6 socket: getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST) first
                   ─ no NAT entry (ENOENT), not redirected (the address is the socket's
                     own), not Linux: None
```

Netfilter keeps the address the client connected to in the connection's conntrack entry;
the option reads it back as a ``sockaddr_in`` (16 bytes) or ``sockaddr_in6`` (28 bytes).
Read once per accepted connection, by a listener started with ``--transparent`` only.
"""

from __future__ import annotations

import socket
import struct

SO_ORIGINAL_DST = 80
"""<linux/netfilter_ipv4.h>; level SOL_IP."""
IP6T_SO_ORIGINAL_DST = 80
"""<linux/netfilter_ipv6/ip6_tables.h>; level SOL_IPV6."""
_SOL_IP = getattr(socket, "SOL_IP", 0)
_SOL_IPV6 = getattr(socket, "SOL_IPV6", 41)

Address = tuple[str, int]


def original_dst(sock: socket.socket) -> Address | None:
    """The address the client connected to before a REDIRECT, or None when the connection
    was not redirected (see the module docstring)."""
    found = None
    if sock.family == socket.AF_INET6:
        found = _v6(sock)
    if found is None:
        found = _v4(sock)
    if found is None:
        return None
    try:
        local = sock.getsockname()
    except OSError:
        return found
    if (local[0].removeprefix("::ffff:"), local[1]) == found:
        return None  # connected to the listener itself
    return found


def _v4(sock: socket.socket) -> Address | None:
    try:
        raw = sock.getsockopt(_SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError:
        return None
    port, packed = struct.unpack_from("!H4s", raw, 2)
    return socket.inet_ntop(socket.AF_INET, packed), port


def _v6(sock: socket.socket) -> Address | None:
    try:
        raw = sock.getsockopt(_SOL_IPV6, IP6T_SO_ORIGINAL_DST, 28)
    except OSError:
        return None
    port, _flow, packed = struct.unpack_from("!HI16s", raw, 2)
    return socket.inet_ntop(socket.AF_INET6, packed), port
