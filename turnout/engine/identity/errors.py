"""Exceptions of the identity service and its on-disk CA.

```
MeshError (engine.errors)
 └── IdentityError
      ├── StoreError               the identity directory: missing, already initialised,
      │                            unreadable or inconsistent files, a rotation out of order
      └── CertifyRefused           a Certify request refused; `code` is its gRPC status name
           ├── InvalidRequest      InvalidArgument: unparsable identity or CSR
           │    └── TokenInvalid   InvalidArgument: a token that is malformed, badly signed,
           │                       expired or for another audience
           ├── PreconditionFailed  FailedPrecondition: the CSR breaks a rule (SANs, CN, key),
           │    │                  the token's account is not the requested identity
           │    └── TokenNotAuthenticated   the API server did not authenticate the token
           └── IssuerUnavailable   Unavailable: no valid issuer loaded, a token review failed
```

The codes are Linkerd's (`pkg/identity/service.go`). Every class takes one message, so they
all pickle.
"""

from __future__ import annotations

from typing import ClassVar

from turnout.engine.errors import MeshError


class IdentityError(MeshError):
    """Base of the identity service's exceptions."""


class StoreError(IdentityError):
    """The identity directory cannot be used as asked; the message names the file."""


class CertifyRefused(IdentityError):
    """A Certify request is refused; the message is what the client is told."""

    code: ClassVar[str] = "Internal"
    """The gRPC status code name (``grpc.StatusCode[code]``)."""


class InvalidRequest(CertifyRefused):
    code = "InvalidArgument"


class TokenInvalid(InvalidRequest):
    """The token is not one we accept (format, signature, expiry, audience)."""


class PreconditionFailed(CertifyRefused):
    code = "FailedPrecondition"


class TokenNotAuthenticated(PreconditionFailed):
    """A well-formed token the authority did not authenticate."""


class IssuerUnavailable(CertifyRefused):
    code = "Unavailable"
