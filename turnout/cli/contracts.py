"""`mesh test`: contract cases evaluated against the offline mesh, and a JUnit report.

```
contract.yaml --load_cases--> [ContractCase + resolved Via]   (a file that is not a contract,
                                                          or a via not in the manifests:
                                                          ContractError, one line each -> 2)
case --OfflineMesh.send(via, request)--> RequestOutcome --check--> CaseResult(diffs)
results --junit_xml--> JUnit XML text
```

Each `expect` key is compared on its own and every difference is reported, so one run shows
everything a change broke. Where the matched rule splits traffic, `backend`, `path`, `host`,
`requestHeaders`, `absentRequestHeaders` and `responseHeaders` must hold for every backend
with a non-zero weight, and `status` for every status the client can get.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.etree import ElementTree as ET

from turnout.cli.errors import ContractError, ViaError
from turnout.cli.offline import (
    BackendOutcome,
    OfflineMesh,
    Request,
    RequestOutcome,
    Via,
    resolve_via,
)
from turnout.engine import ir
from turnout.engine.config import DEFAULT_MAX_FILE_BYTES
from turnout.engine.errors import LimitExceeded, LoadError
from turnout.engine.model import Resources
from turnout.engine.model.contract import ContractCase, ContractProblem, Expectation, load_contracts
from turnout.engine.model.limits import ManifestLimits, read_manifest


@dataclass(frozen=True, slots=True, kw_only=True)
class Diff:
    field: str
    want: object
    got: object

    def __str__(self) -> str:
        return f"{self.field}: want {self.want!r}, got {self.got!r}"


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseResult:
    file: str
    name: str
    diffs: tuple[Diff, ...] = ()
    error: str | None = None
    """Set when the case could not run at all (e.g. a malformed URL)."""

    @property
    def passed(self) -> bool:
        return not self.diffs and self.error is None


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedCase:
    file: str
    case: ContractCase
    via: Via
    """The case's via, resolved against the manifests (its port defaulted)."""


def load_cases(
    paths: Sequence[str],
    table: ir.RouteTable,
    resources: Resources | None = None,
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> tuple[list[LoadedCase], list[ContractProblem]]:
    """Every case of every contract file, with its via resolved against `table`; or the
    problems (each names file, document, field and line) that keep some from running. A file
    over a cap raises `LimitExceeded` (the caps of manifests: `engine.model.limits`)."""
    cases: list[LoadedCase] = []
    problems: list[ContractProblem] = []
    limits = ManifestLimits(max_file_bytes=max_file_bytes)
    for path in paths:
        try:
            text = read_manifest(path, limits=limits)
        except LimitExceeded:
            raise
        except LoadError as exc:
            cause = exc.__cause__
            reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause)
            raise ContractError(f"{path}: cannot read: {reason}") from exc
        docs, found = load_contracts(text, file=path, limits=limits)
        problems += found
        for doc in docs:
            for i, case in enumerate(doc.contract.cases):
                try:
                    via = resolve_via(
                        case.via,
                        table,
                        resources=resources,
                        from_namespace=case.via.from_namespace,
                    )
                except ViaError as exc:
                    problems.append(doc.problem(f"cases[{i}].via", f"case {case.name!r}: {exc}"))
                    continue
                cases.append(LoadedCase(file=path, case=case, via=via))
    return cases, problems


def _headers(case: ContractCase) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for name, value in case.request.headers.items():
        values = value if isinstance(value, list) else [value]
        out.extend((name, v) for v in values)
    return tuple(out)


def run_case(mesh: OfflineMesh, loaded: LoadedCase) -> CaseResult:
    case, file = loaded.case, loaded.file
    request = Request(method=case.request.method, url=case.request.url, headers=_headers(case))
    try:
        outcome = mesh.send(loaded.via, request)
    except ValueError as exc:
        return CaseResult(file=file, name=case.name, error=str(exc))
    return CaseResult(file=file, name=case.name, diffs=tuple(check(case.expect, outcome)))


def _joined(headers: Sequence[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for n, v in headers:
        key = n.lower()
        out[key] = f"{out[key]},{v}" if key in out else v
    return out


def _per_backend(expect: Expectation, b: BackendOutcome) -> list[Diff]:
    diffs: list[Diff] = []
    who = f"[{b.service or b.backend.name}]"
    u = b.upstream
    if expect.path is not None:
        got = u.path_and_query if u else None
        if got != expect.path:
            diffs.append(Diff(field=f"path{who}", want=expect.path, got=got))
    if expect.host is not None:
        got_host = u.authority if u else None
        if got_host != expect.host:
            diffs.append(Diff(field=f"host{who}", want=expect.host, got=got_host))
    seen = _joined(u.headers) if u else {}
    for name, want in (expect.request_headers or {}).items():
        if seen.get(name.lower()) != want:
            diffs.append(
                Diff(field=f"requestHeaders.{name}{who}", want=want, got=seen.get(name.lower()))
            )
    for name in expect.absent_request_headers or ():
        if name.lower() in seen:
            diffs.append(
                Diff(field=f"absentRequestHeaders.{name}{who}", want=None, got=seen[name.lower()])
            )
    resp = _joined(b.response_headers)
    for name, want in (expect.response_headers or {}).items():
        if resp.get(name.lower()) != want:
            diffs.append(
                Diff(field=f"responseHeaders.{name}{who}", want=want, got=resp.get(name.lower()))
            )
    return diffs


def check(expect: Expectation, o: RequestOutcome) -> list[Diff]:
    diffs: list[Diff] = []
    if expect.status is not None and set(o.statuses) != {expect.status}:
        got: object = o.status if o.status is not None else list(o.statuses)
        diffs.append(Diff(field="status", want=expect.status, got=got))
    live = o.live_backends
    if expect.backend is not None:
        want_ns = expect.backend.namespace
        got_names = sorted({b.service or f"<invalid {b.backend.name}>" for b in live})
        ok = len(got_names) == 1 and any(
            b.service is not None
            and b.service.split("/", 1)[1] == expect.backend.name
            and (want_ns is None or b.service.split("/", 1)[0] == want_ns)
            for b in live
        )
        if not ok:
            want = f"{want_ns}/{expect.backend.name}" if want_ns else expect.backend.name
            diffs.append(Diff(field="backend", want=want, got=got_names or None))
    if expect.weights is not None:
        got_weights: dict[str, int] = {}
        for b in o.backends:
            got_weights[b.ref] = got_weights.get(b.ref, 0) + b.weight
        if got_weights != expect.weights:
            diffs.append(Diff(field="weights", want=expect.weights, got=got_weights))
    if expect.redirect is not None:
        r = expect.redirect
        if r.status is not None and o.status != r.status:
            diffs.append(Diff(field="redirect.status", want=r.status, got=o.status))
        if r.location is not None and o.redirect != r.location:
            diffs.append(Diff(field="redirect.location", want=r.location, got=o.redirect))
    backend_keys = (
        expect.path,
        expect.host,
        expect.request_headers,
        expect.absent_request_headers,
    )
    if any(k is not None for k in backend_keys) and not live:
        diffs.append(Diff(field="backend request", want="a backend receives the request", got=None))
    for b in live:
        diffs.extend(_per_backend(expect, b))
    if expect.response_headers is not None and not live:
        resp = _joined(o.response_headers)
        for name, want in expect.response_headers.items():
            if resp.get(name.lower()) != want:
                diffs.append(
                    Diff(field=f"responseHeaders.{name}", want=want, got=resp.get(name.lower()))
                )
    return diffs


def junit_xml(results: Sequence[CaseResult], *, suite: str = "mesh test") -> str:
    root = ET.Element(
        "testsuite",
        name=suite,
        tests=str(len(results)),
        failures=str(sum(bool(r.diffs) for r in results)),
        errors=str(sum(r.error is not None for r in results)),
    )
    for r in results:
        tc = ET.SubElement(root, "testcase", classname=r.file, name=r.name)
        if r.error is not None:
            ET.SubElement(tc, "error", message=r.error).text = r.error
        elif r.diffs:
            text = "\n".join(str(d) for d in r.diffs)
            ET.SubElement(tc, "failure", message=str(r.diffs[0])).text = text
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
