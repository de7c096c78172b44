"""The `mesh test` contract file format (ours, not a Kubernetes kind).

```yaml
cases:
- name: canary header reaches v2
  via: {kind: Service, namespace: emojivoto, name: web, port: 80, fromNamespace: loadgen}
  request: {method: GET, url: "http://web.emojivoto/", headers: {x-canary: "true"}}
  expect: {status: 200, backend: {name: web-v2, namespace: emojivoto}}
```
Documented in README.md. Parsed with pydantic like every other input, so a mistake names the
file, the case and the field.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictInt, StrictStr

from turnout.engine.model.base import K8sModel


class Via(K8sModel):
    kind: Literal["Service", "Gateway"]
    namespace: StrictStr = "default"
    name: StrictStr
    port: StrictInt = Field(ge=1, le=65535)
    from_namespace: StrictStr | None = None


class ContractRequest(K8sModel):
    method: StrictStr = "GET"
    url: StrictStr
    headers: dict[str, StrictStr | list[StrictStr]] = Field(default_factory=dict)


class BackendExpectation(K8sModel):
    name: StrictStr
    namespace: StrictStr | None = None


class RedirectExpectation(K8sModel):
    status: StrictInt | None = None
    location: StrictStr | None = None


class Expectation(K8sModel):
    status: StrictInt | None = None
    backend: BackendExpectation | None = None
    weights: dict[str, StrictInt] | None = None
    request_headers: dict[str, StrictStr] | None = None
    absent_request_headers: list[StrictStr] | None = None
    path: StrictStr | None = None
    host: StrictStr | None = None
    response_headers: dict[str, StrictStr] | None = None
    redirect: RedirectExpectation | None = None


class ContractCase(K8sModel):
    name: StrictStr
    via: Via
    request: ContractRequest
    expect: Expectation


class Contract(K8sModel):
    cases: list[ContractCase] = Field(min_length=1)
