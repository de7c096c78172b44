"""Outbound mesh TLS per endpoint: the TLS status a try is labeled with, and the fail-closed
checks (``--require-mtls``, Linkerd's ``l5d-require-id``) made before anything is sent.

```
Call._try ─ balancer slot ─► endpoint identity (LbEndpoint ``turnout.identity``; None: none)
   ├─ refusal(meshed, identity, require_mtls, require_id) ─► an Answer: 502, no connection
   └─ server_tls(meshed, identity) ─► Exchange.endpoint(addr, status): metrics and tap labels
```

| proxy | endpoint | status (``tls`` labels) | ``--require-mtls`` | ``l5d-require-id: X`` |
| --- | --- | --- | --- | --- |
| no ``--identity`` | any | ``tls="disabled"`` | (a usage error) | 502 ``mesh tls disabled`` |
| ``--identity`` | identity ``I`` | ``tls="true",server_id="I"`` | sent | sent when ``I == X``, else 502 ``endpoint identity mismatch`` |
| ``--identity`` | none | ``tls="no_identity",no_tls_reason="not_provided_by_service_discovery"`` | 502 ``endpoint not meshed`` | 502 ``endpoint not meshed`` |

A request sent to ``I`` goes over mTLS whose handshake checks the server's certificate names
``I`` (`transport/client.py`), so matching the expected identity here is what proves it.
Statuses are tuples built once per identity (`server_tls`), so a try costs a dict hit.
"""

from __future__ import annotations

import logging

from turnout.proxy.answers import Answer
from turnout.proxy.transport.messages import TLS_DISABLED, TlsStatus

log = logging.getLogger(__name__)

NOT_PROVIDED: TlsStatus = ("no_identity", "no_tls_reason", "not_provided_by_service_discovery")
"""A proxy with an identity, an endpoint discovery gives none: plaintext."""

NOT_MESHED = Answer(
    502,
    "endpoint not meshed",
    detail="mTLS is required and service discovery gives the endpoint no identity;"
    " nothing was sent to it",
)
NO_IDENTITY = Answer(
    502,
    "mesh tls disabled",
    detail="l5d-require-id asks for mTLS and this proxy has no --identity; nothing was sent",
)
REFUSED_ERROR = "EndpointNotMeshed"
"""The metrics' ``error`` label of a refused request."""

MAX_STATUSES = 4096
"""Server identities whose status is remembered (then the cache starts over)."""

_statuses: dict[str, TlsStatus] = {}


def server_tls(meshed: bool, identity: str | None) -> TlsStatus:
    """The status of a try to an endpoint expected to be `identity` (None: none), from a
    proxy with (`meshed`) or without an identity."""
    if not meshed:
        return TLS_DISABLED
    if identity is None:
        return NOT_PROVIDED
    status = _statuses.get(identity)
    if status is None:
        if len(_statuses) >= MAX_STATUSES:
            _statuses.clear()
        status = _statuses[identity] = ("true", "server_id", identity)
    return status


def refusal(
    *, meshed: bool, identity: str | None, require_mtls: bool, require_id: str | None
) -> Answer | None:
    """The 502 for a try that must not be sent, or None to send it (table above)."""
    if require_id is not None:
        if not meshed:
            return NO_IDENTITY
        if identity is None:
            return NOT_MESHED
        if identity != require_id:
            return Answer(
                502,
                "endpoint identity mismatch",
                detail=f"l5d-require-id is {require_id} and the endpoint is {identity};"
                " nothing was sent",
            )
        return None
    if require_mtls and (identity is None or not meshed):
        return NOT_MESHED
    return None
