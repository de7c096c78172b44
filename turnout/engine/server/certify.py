"""The identity service on gRPC: `io.linkerd.proxy.identity.Identity/Certify`.

```
CertifyRequest  {1 identity: string, 2 token: bytes, 3 certificate_signing_request: bytes}
      │ IdentityService.certify (engine.identity)     CertifyRefused.code -> grpc status
      v
CertifyResponse {1 leaf_certificate: bytes (DER), 2 intermediate_certificates: repeated bytes
                 (DER), 3 valid_until: google.protobuf.Timestamp, 4 trust_anchors: bytes (PEM)}
```

Fields 1-3 are Linkerd's `proto/identity.proto` (linkerd2-proxy-api) field for field, under
the same package and service name, so Linkerd's client can talk to it; field 4 is ours:
the trust bundle, which a proxy re-reads from every response (so an anchor rotation needs no
restart). There is no grpcio-tools here, so the two messages are built at import time from a
`FileDescriptorProto` (descriptor_pb2 + message_factory), the same wire format `protoc` would
give. `certify_handler(service)` is a generic handler `AdsServer` adds to its server.

Not here: TLS of the port (the ADS server is plaintext today), the checks themselves.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
import grpc.aio

from turnout.engine.identity.errors import CertifyRefused
from turnout.engine.identity.service import IdentityService
from turnout.wire.certify import SERVICE, CertifyRequest, CertifyResponse

log = logging.getLogger(__name__)


def certify_handler(service: IdentityService) -> grpc.GenericRpcHandler:
    """The Identity service for `grpc.aio.Server.add_generic_rpc_handlers`."""

    async def certify(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            leaf = await service.certify(
                identity=request.identity,
                token=request.token,
                csr=request.certificate_signing_request,
            )
        except CertifyRefused as exc:
            await context.abort(grpc.StatusCode[_STATUS[exc.code]], str(exc))
            raise AssertionError("abort returned") from None
        except Exception:
            log.error("identity certify failed identity=%s", request.identity, exc_info=True)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error issuing the leaf")
            raise AssertionError("abort returned") from None
        response = CertifyResponse(
            leaf_certificate=leaf.der,
            intermediate_certificates=list(leaf.chain),
            trust_anchors=leaf.bundle_pem,
        )
        response.valid_until.FromDatetime(leaf.valid_until)
        return response

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Certify": grpc.unary_unary_rpc_method_handler(
                certify,
                request_deserializer=CertifyRequest.FromString,
                response_serializer=CertifyResponse.SerializeToString,
            )
        },
    )


_STATUS = {
    "InvalidArgument": "INVALID_ARGUMENT",
    "FailedPrecondition": "FAILED_PRECONDITION",
    "Unavailable": "UNAVAILABLE",
    "Internal": "INTERNAL",
}
