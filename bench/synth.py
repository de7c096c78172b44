"""Synthetic manifests for benchmarks: N HTTPRoutes on one Service parent, or spread over
several (`services=1000`: route i on Service ``web{i % 1000}``)."""

from __future__ import annotations

from collections.abc import Sequence

from turnout.engine.diagnostics import SourcePos
from turnout.engine.model import Document


def service(ns: str, name: str, port: int = 80) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ports": [{"name": "http", "port": port}]},
    }


def route(ns: str, i: int, *, parent: str = "web") -> dict[str, object]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": f"r{i}", "namespace": ns, "generation": 1},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": parent, "port": 80}],
            "rules": [
                {
                    "matches": [
                        {
                            "path": {"type": "PathPrefix", "value": f"/svc{i}/api"},
                            "headers": [{"name": "x-tenant", "value": f"t{i % 7}"}],
                        },
                        {"path": {"type": "Exact", "value": f"/exact/{i}"}},
                    ],
                    "timeouts": {"request": "2s"},
                    "backendRefs": [
                        {"name": "v1", "port": 80, "weight": 90},
                        {"name": "v2", "port": 80, "weight": 10},
                    ],
                }
            ],
        },
    }


def documents(
    n: int, *, ns: str = "bench", services: int = 1, extra: Sequence[dict[str, object]] = ()
) -> list[Document]:
    parents = ["web"] if services == 1 else [f"web{k}" for k in range(services)]
    raws = [*(service(ns, p) for p in parents), service(ns, "v1"), service(ns, "v2")]
    raws += [route(ns, i, parent=parents[i % len(parents)]) for i in range(n)]
    raws += extra
    return [
        Document(pos=SourcePos(file="bench.yaml", doc_index=i), raw=raw)
        for i, raw in enumerate(raws)
    ]
