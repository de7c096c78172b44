"""Route manifests more than one e2e test module uses, kept in one place (STYLE §12: no
test module imports another).

```
SMOKE_ROUTE            /v2 -> web-v2 (sets x-route: v2), everything else -> web-v1
LIMITS_ROUTES          everything -> web-v1; /raw -> the raw backend (prefix rewritten to /)
split({"b": w, ...})   one rule, weighted backendRefs
smoke_manifests(lab, tmp) -> a file: SMOKE_ROUTE plus its Services on two fresh backends
```
"""

from __future__ import annotations

from pathlib import Path

from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import httproute, service_yaml

SMOKE_ROUTE = httproute("""
  - matches: [{path: {type: PathPrefix, value: /v2}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-route, value: v2}]}
    backendRefs: [{name: web-v2, port: 80}]
  - backendRefs: [{name: web-v1, port: 80}]
""")

LIMITS_ROUTES = httproute("""
  - backendRefs: [{name: web-v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /raw}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}
    backendRefs: [{name: raw, port: 80}]
""")


def split(weights: dict[str, int], *, name: str = "web") -> str:
    """An HTTPRoute for Service `name` with one rule splitting over `weights`."""
    refs = "".join(f"\n    - {{name: {b}, port: 80, weight: {w}}}" for b, w in weights.items())
    return httproute(
        f"  - matches: [{{path: {{type: PathPrefix, value: /}}}}]\n    backendRefs:{refs}",
        name=name,
    )


async def smoke_manifests(lab: Lab, tmp_path: Path) -> Path:
    """The smoke test's route and Services, on two fresh backends (v1, v2), as a file."""
    v1, v2 = await lab.backend("v1"), await lab.backend("v2")
    manifests = tmp_path / "mesh.yaml"
    docs = [service_yaml("web", []), service_yaml("web-v1", [v1]), service_yaml("web-v2", [v2])]
    manifests.write_text("\n---\n".join([*docs, SMOKE_ROUTE]))
    return manifests
