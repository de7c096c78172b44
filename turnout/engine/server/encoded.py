"""Responses serialized once and sent to many streams: shared bytes plus each stream's nonce.

```
Built (one namespace's view of a snapshot)
  bodies[(type_url, names sent, names removed)] ─ miss ─> DeltaDiscoveryResponse without
                                               │          nonce, SerializeToString (once)
                                               v
  Encoded(body, nonce) ── grpc response serializer `serialize` ──> body + field 5 (nonce)
```

After a publish every stream that had the previous snapshot's view is due the same
resources; only the nonce differs. The protobuf wire format lets a message be the
concatenation of its fields in any order (a parser keeps the last value of a singular
field), so `body + nonce field` parses to the very message `SerializeToString` gives, the
nonce's place in the bytes aside. The body map is bounded (`MAX_BODIES`, then cleared): a
stream with a state of its own (a reconnect with other versions) still costs one
serialization, as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from turnout.engine.xds.wire import varint

NONCE_FIELD = 5
"""`nonce`'s field number in both `DiscoveryResponse` and `DeltaDiscoveryResponse`."""
MAX_BODIES = 256
"""Distinct bodies kept per view; one per (type, sent names, removed names)."""

BodyKey = tuple[str, tuple[str, ...], tuple[str, ...]]


def nonce_field(nonce: str) -> bytes:
    """The encoded `nonce` field (tag 5, length-delimited)."""
    raw = nonce.encode()
    return bytes((NONCE_FIELD << 3 | 2,)) + varint(len(raw)) + raw


@dataclass(frozen=True, slots=True)
class Encoded:
    """A response ready for the wire: `body` (shared) plus this stream's `nonce`."""

    type_url: str
    nonce: str
    body: bytes
    system_version_info: str
    resource_count: int
    removed_resources: tuple[str, ...]

    @property
    def data(self) -> bytes:
        return self.body + nonce_field(self.nonce)

    def message(self) -> Any:
        """Parsed back (tests, debugging): a `DeltaDiscoveryResponse`."""
        return discovery_pb2.DeltaDiscoveryResponse.FromString(self.data)

    @property
    def resources(self) -> Sequence[Any]:
        return self.message().resources  # type: ignore[no-any-return]


def delta_body(
    bodies: dict[BodyKey, bytes],
    *,
    type_url: str,
    system_version: str,
    send: Mapping[str, str],
    removed: Sequence[str],
    view: Mapping[str, any_pb2.Any],
) -> tuple[bytes, tuple[str, ...]]:
    """The serialized `DeltaDiscoveryResponse` without a nonce (cached in `bodies`), and the
    sorted removed names. `send` maps names to versions of this view, so names are a key."""
    names = tuple(sorted(send))
    gone = tuple(sorted(removed))
    key = (type_url, names, gone)
    body = bodies.get(key)
    if body is None:
        body = discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=system_version,
            type_url=type_url,
            removed_resources=gone,
            resources=[
                discovery_pb2.Resource(name=n, version=send[n], resource=view[n]) for n in names
            ],
        ).SerializeToString()
        if len(bodies) >= MAX_BODIES:
            bodies.clear()
        bodies[key] = body
    return body, gone


def serialize(response: Any) -> bytes:
    """grpc's response serializer for the ADS methods: an `Encoded` goes out as its bytes,
    a protobuf message is serialized."""
    if isinstance(response, Encoded):
        return response.body + nonce_field(response.nonce)
    return response.SerializeToString()  # type: ignore[no-any-return]
