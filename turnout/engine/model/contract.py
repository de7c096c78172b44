"""The `mesh test` contract file format (ours, not a Kubernetes kind), and its loader.

```yaml
cases:
- name: canary header reaches v2
  via: {kind: Service, namespace: emojivoto, name: web, port: 80, fromNamespace: loadgen}
  request: {method: GET, url: "http://web.emojivoto/", headers: {x-canary: "true"}}
  expect: {status: 200, backend: {name: web-v2, namespace: emojivoto}}
- name: the same, as --via is written
  via: service/emojivoto/web        # svc/NAME, gateway/NS/NAME:PORT ...; port: when only one
  ...
```

```
text --compose_yaml (limits)--> nodes --field_lines--> field path -> line
                           nodes --construct, Contract.model_validate--> ContractDocument
                                   errors --> ContractProblem("c.yaml[0] cases[1].via.kind
                                              (line 7): Unsupported value: ...")
```
A file may hold several documents (each a contract with `cases`). Parsed with pydantic like
every other input, worded like the API server's field errors (`kinds.schema_diagnostic`), so
a mistake names the file, the document, the field and its line. `parse_via_text` is the one
grammar of a via (`--via` and `via:`); which port a via without one means, and whether the
manifests have that parent, is the CLI's to decide against the compiled table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, StrictInt, StrictStr, ValidationError, model_validator

from turnout.engine.diagnostics import SourcePos
from turnout.engine.model.base import K8sModel
from turnout.engine.model.kinds import schema_diagnostic
from turnout.engine.model.limits import (
    DEFAULT_LIMITS,
    BadYAML,
    Composed,
    ManifestLimits,
    compose_yaml,
)
from turnout.engine.model.loader import field_lines

VIA_KINDS: Mapping[str, Literal["Service", "Gateway"]] = {
    "service": "Service",
    "services": "Service",
    "svc": "Service",
    "gateway": "Gateway",
    "gateways": "Gateway",
    "gtw": "Gateway",
}
"""How a via may name its kind, any case: kubectl's resource names and short names."""

VIA_FORMS = "KIND/NS/NAME[:PORT] or KIND/NAME[:PORT] (KIND: service, svc, gateway, gtw)"


class ViaRef(K8sModel):
    """The parent a request goes through, as written; `port` None: the only one it has."""

    kind: Literal["Service", "Gateway"]
    namespace: StrictStr = "default"
    name: StrictStr = Field(min_length=1)
    port: StrictInt | None = Field(default=None, ge=1, le=65535)
    from_namespace: StrictStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_via_text(value).model_dump(exclude_none=True)
        return value

    @property
    def shown(self) -> str:
        """``service/NS/NAME`` (without the port)."""
        return f"{self.kind.lower()}/{self.namespace}/{self.name}"


def parse_via_text(text: str, *, namespace: str | None = None) -> ViaRef:
    """``Service/NS/NAME[:PORT]``, ``svc/NAME[:PORT]`` (in `namespace`, default ``default``),
    ``gateway/NS/NAME``...; ValueError names the forms. A namespace in `text` and a different
    `namespace` (``-n``) contradict each other, as in kubectl."""
    ref, colon, port = text.partition(":")
    parts = ref.split("/")
    kind = VIA_KINDS.get(parts[0].lower()) if len(parts) in (2, 3) else None
    if kind is None or not all(parts) or (colon and not (port.isdigit() and 0 < int(port) < 65536)):
        raise ValueError(f"want {VIA_FORMS}, got {text!r}")
    ns = parts[1] if len(parts) == 3 else (namespace or "default")
    if namespace is not None and ns != namespace:
        raise ValueError(f"{text!r} names namespace {ns!r} but -n says {namespace!r}")
    return ViaRef(kind=kind, namespace=ns, name=parts[-1], port=int(port) if colon else None)


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
    via: ViaRef
    request: ContractRequest
    expect: Expectation


class Contract(K8sModel):
    cases: list[ContractCase] = Field(min_length=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class ContractProblem:
    """Why a contract document cannot be used: where (file, document, field, line) and what."""

    pos: SourcePos
    line: int | None
    """1-based line of the field (or of the nearest enclosing one); None when unknown."""
    message: str

    def __str__(self) -> str:
        line = f" (line {self.line})" if self.line is not None else ""
        return f"{self.pos}{line}: {self.message}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ContractDocument:
    """One document of a contract file."""

    pos: SourcePos
    """The file and the document index; path ""."""
    contract: Contract
    lines: Mapping[str, int]
    """Field path -> line, as `field_lines` gives them."""

    def problem(self, path: str, message: str) -> ContractProblem:
        """A problem at `path` (``cases[2].via``) of this document, with its line."""
        return ContractProblem(
            pos=self.pos.at(path), line=line_of(self.lines, path), message=message
        )


def line_of(lines: Mapping[str, int], path: str) -> int | None:
    """The line of `path`, or of its nearest ancestor that is written (a missing field)."""
    while True:
        if path in lines:
            return lines[path]
        if not path:
            return None
        cut = max(path.rfind("."), path.rfind("["))
        path = path[: max(cut, 0)]


def load_contracts(
    text: str, *, file: str, limits: ManifestLimits = DEFAULT_LIMITS
) -> tuple[list[ContractDocument], list[ContractProblem]]:
    """Every non-empty document of a contract file, or the problems of those that are not
    contracts (bad YAML ends the file: what follows cannot be split into documents). A file
    over a cap (`limits`) raises `LimitExceeded`."""
    docs: list[ContractDocument] = []
    problems: list[ContractProblem] = []
    nodes: list[Composed] = []
    bad_yaml: ContractProblem | None = None
    for composed in compose_yaml(text, file=file, limits=limits):
        if isinstance(composed, BadYAML):
            pos = SourcePos(file=file, doc_index=len(nodes))
            message = f"invalid YAML: {composed.problem}"
            bad_yaml = ContractProblem(pos=pos, line=composed.line, message=message)
        else:
            nodes.append(composed)
    for index, composed in enumerate(nodes):
        raw = composed.construct()
        if raw is None:
            continue
        pos = SourcePos(file=file, doc_index=index)
        lines = field_lines(composed.node, line_offset=composed.line_offset)
        try:
            contract = Contract.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                d = schema_diagnostic(err, pos)
                message = d.message
                if err["type"] == "value_error":  # a via string: the grammar's own words
                    message = str(err.get("ctx", {}).get("error", err["msg"]))
                problems.append(
                    ContractProblem(pos=d.pos, line=line_of(lines, d.pos.path), message=message)
                )
            continue
        docs.append(ContractDocument(pos=pos, contract=contract, lines=lines))
    if bad_yaml is not None:
        problems.append(bad_yaml)
    if not docs and not problems:
        pos = SourcePos(file=file, doc_index=0)
        problems.append(ContractProblem(pos=pos, line=None, message="no contract in the file"))
    return docs, problems
