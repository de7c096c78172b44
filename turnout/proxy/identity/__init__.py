"""The proxy's workload identity: its key, its CSR, the Certify client that keeps a leaf
certificate fresh, and the TLS contexts mTLS uses (docs/mtls.md is the contract).

```
Material (P-256 key, PKCS#8, once per process; CSR: empty subject, one DNS SAN)
   └─► IdentityClient.run ─ Certify(identity, token file, CSR) over gRPC ─► Issued
         (renews at 70% of the remaining validity, clamped to [10 s, 24 h])
            └─► IdentityState.install ─► server / client `ssl.SSLContext`, swapped atomically
```

Only `client.py` imports grpc, only `messages.py` protobuf, and only `material.py` and
`state.py` cryptography; `names.py` is plain Python, for the request path and the CLI.
"""

from __future__ import annotations
