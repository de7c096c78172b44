"""The mesh's certificate authority and identity service (control-plane side).

```
names.py      ServiceAccount <-> identity name (DNS SAN), SPIFFE id (URI SAN), TokenReview user
certs.py      P-256 keys, the trust anchor and the issuer certificates, PEM helpers
csr.py        the checks a CSR must pass (one DNS SAN = identity, CN, P-256, no other SANs)
authority.py  Authority: issuer + trust bundle in memory; issue() -> Leaf (Linkerd's template)
store.py      the identity directory: init, rotate (issuer, anchor in 3 steps), AuthorityFiles
tokens.py     TokenVerifier (the seam), join tokens (HS256 JWT) of the embedded mode
health.py     the CA's checks (validity, 60 days, issuer signed by an anchor): status, check
service.py    IdentityService.certify: the checks in order, then the leaf
errors.py     IdentityError tree (StoreError; CertifyRefused with its gRPC code name)
settings.py   DEFAULT_* and IdentitySettings (config.json); clock.py: the Clock seam
```

`mesh identity init|rotate|token` (`cli.security`) write the directory; `mesh serve
--identity-dir` serves `IdentityService` as the gRPC Certify RPC (`engine.server.certify`);
in Kubernetes mode tokens are checked with a TokenReview (`engine.sources.k8s.tokenreview`).
Not here: gRPC, protobuf, Kubernetes (this package imports none of them), and the proxy's
side (its key, CSR, renewals, mTLS). This file imports nothing: `mesh`'s parser reads
`settings.py`'s defaults without loading `cryptography`; import the modules themselves.
"""

from __future__ import annotations
