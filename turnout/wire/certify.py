"""The Certify messages, shared by the identity service (`engine/server/certify.py`) and
the proxy's identity client (`proxy/identity/client.py`), which may not import each other.

The wire format of Linkerd's `io.linkerd.proxy.identity.Identity` (`linkerd2-proxy-api: proto/identity.proto`), plus
Turnout's field 4 (docs/identity.md "Certify"):

```
CertifyRequest  {1 identity: string, 2 token: bytes, 3 certificate_signing_request: bytes}
CertifyResponse {1 leaf_certificate: bytes (DER), 2 intermediate_certificates: repeated bytes
                 (DER), 3 valid_until: google.protobuf.Timestamp, 4 trust_anchors: bytes (PEM)}
```

There is no grpcio-tools here: the classes are built at import time from a
`FileDescriptorProto`, in a private descriptor pool (so both sides may live in one process).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

PACKAGE = "io.linkerd.proxy.identity"
SERVICE = f"{PACKAGE}.Identity"
METHOD = f"/{SERVICE}/Certify"

_F = descriptor_pb2.FieldDescriptorProto
_OPT, _REP = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED


def _file() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(
        name="turnout/identity.proto",
        package=PACKAGE,
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"],
    )
    req = f.message_type.add(name="CertifyRequest")
    req.field.add(name="identity", number=1, type=_F.TYPE_STRING, label=_OPT)
    req.field.add(name="token", number=2, type=_F.TYPE_BYTES, label=_OPT)
    req.field.add(name="certificate_signing_request", number=3, type=_F.TYPE_BYTES, label=_OPT)
    resp = f.message_type.add(name="CertifyResponse")
    resp.field.add(name="leaf_certificate", number=1, type=_F.TYPE_BYTES, label=_OPT)
    resp.field.add(name="intermediate_certificates", number=2, type=_F.TYPE_BYTES, label=_REP)
    resp.field.add(
        name="valid_until",
        number=3,
        type=_F.TYPE_MESSAGE,
        type_name=".google.protobuf.Timestamp",
        label=_OPT,
    )
    resp.field.add(name="trust_anchors", number=4, type=_F.TYPE_BYTES, label=_OPT)
    return f


def _messages() -> tuple[Any, Any]:
    pool = descriptor_pool.DescriptorPool()
    ts = descriptor_pb2.FileDescriptorProto()
    timestamp_pb2.DESCRIPTOR.CopyToProto(ts)
    pool.Add(ts)
    pool.Add(_file())
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.CertifyRequest")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.CertifyResponse")),
    )


CertifyRequest, CertifyResponse = _messages()
"""Protobuf `Message` classes of the two messages."""
