"""Conformance case folders: `manifests.yaml` + `conformance.yaml`, loaded into dataclasses.

A folder restates one upstream conformance test (or a few that share manifests): the
manifests are the objects the upstream test applies, written for Turnout, without
EndpointSlices or TLS Secrets (the runner adds those for its echo backends and its
certificates). `conformance.yaml` holds the upstream tests:

```yaml
secrets: [{namespace: NS, name: NAME, hosts: [a.example]}]   # kubernetes.io/tls, made per run
tests:
- name: HTTPRouteWeight                   # the upstream ShortName
  features: [Gateway, HTTPRoute]          # upstream SupportedFeatures names it needs
  xfail: why (optional)                   # a known Turnout bug: must fail (strict)
  cases:
  - name: what this request checks
    via: {kind: Gateway, namespace: NS, name: GW, port: 80}      # a `mesh proxy --gateway`
    # via: {kind: Service, namespace: NS, name: SVC, port: 80, fromNamespace: CLIENT}  # mesh
    request: {url: 'http://host/path?q', method: GET, headers: {n: v}, sni: host, websocket: false}
    expect: {status: 200, backend: {name: B, namespace: NS}, ...}   # keys: `Expect`
    # expect.sample: {requests: N, weights: {NS/NAME: W}, tolerance: T, mirrors: {NS/NAME: P},
    #                 backendHeader: NAME}                             # keys: `Sample`
```

Anything else in a file is an error naming the file and the field, so a typo cannot turn
a check off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import yaml

CASES = Path(__file__).resolve().parent / "cases"


class CaseError(Exception):
    """A case file that cannot be used: the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class Via:
    """Which proxy carries a request: a Gateway's port, or the mesh seen from a namespace."""

    kind: str
    """``Gateway`` (``mesh proxy --gateway NS/NAME:PORT``) or ``Service`` (a mesh proxy)."""
    namespace: str
    name: str
    port: int
    from_namespace: str | None = None
    """Mesh only: the client's namespace (``mesh proxy -n``); None: the Service's."""

    @property
    def key(self) -> str:
        """One proxy process per key."""
        if self.kind == "Gateway":
            return f"gateway {self.namespace}/{self.name}:{self.port}"
        return f"mesh {self.from_namespace or self.namespace}"


@dataclass(frozen=True, slots=True)
class Sample:
    requests: int
    weights: Mapping[str, int]
    """``NS/NAME`` of an echo (or ``status/500``) -> its weight; 0: never answers."""
    tolerance: int
    """Allowed distance of each observed share from its expected one, in percent points."""
    mirrors: Mapping[str, int] = field(default_factory=dict)
    """``NS/NAME`` of a mirror -> the percent of the sampled requests it must receive a copy of."""
    backend_header: str | None = None
    """A request header that must name, on every sampled request, the echo that got it
    (a backendRef-level filter ran for the backend picked, and only for it)."""


@dataclass(frozen=True, slots=True)
class Expect:
    status: int | None = None
    backend: str | None = None
    """``NS/NAME`` of the echo that must answer."""
    path: str | None = None
    """The request target (path and query) as the backend saw it."""
    host: str | None = None
    request_headers: Mapping[str, str] = field(default_factory=dict)
    absent_request_headers: tuple[str, ...] = ()
    response_headers: Mapping[str, str] = field(default_factory=dict)
    absent_response_headers: tuple[str, ...] = ()
    redirect: Mapping[str, object] | None = None
    """``status`` and ``location`` of a redirect (no backend answers)."""
    sample: Sample | None = None
    mirrors: tuple[str, ...] = ()
    """``NS/NAME`` of each echo that must receive one copy of the request."""
    attempts: Mapping[str, int] = field(default_factory=dict)
    """``NS/NAME`` -> how many requests for this target that echo must have received."""
    certificate: str | None = None
    """``NS/NAME`` of the TLS Secret whose certificate the handshake must present."""
    max_ms: int | None = None
    """The answer must come within this many milliseconds."""
    min_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    sni: str | None = None
    """TLS server name (https only); default: the URL's host."""
    websocket: bool = False
    """Open a WebSocket (the URL's path) and expect a text and a binary message echoed."""

    @property
    def https(self) -> bool:
        return urlsplit(self.url).scheme == "https"

    @property
    def host(self) -> str:
        """The Host header: the URL's authority as written (a port stays)."""
        return urlsplit(self.url).netloc

    @property
    def target(self) -> str:
        parts = urlsplit(self.url)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    via: Via
    request: Request
    expect: Expect


@dataclass(frozen=True, slots=True)
class UpstreamTest:
    name: str
    features: tuple[str, ...]
    cases: tuple[Case, ...]
    xfail: str | None = None


@dataclass(frozen=True, slots=True)
class SecretSpec:
    namespace: str
    name: str
    hosts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Folder:
    path: Path
    manifests: str
    tests: tuple[UpstreamTest, ...]
    secrets: tuple[SecretSpec, ...] = ()

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def vias(self) -> tuple[Via, ...]:
        seen: dict[str, Via] = {}
        for t in self.tests:
            for c in t.cases:
                seen.setdefault(c.via.key, c.via)
        return tuple(seen.values())


def folders() -> list[Path]:
    return sorted(p for p in CASES.iterdir() if (p / "conformance.yaml").exists())


def _map(v: object, where: str) -> Mapping[str, object]:
    if not isinstance(v, Mapping):
        raise CaseError(f"{where}: expected a mapping, got {type(v).__name__}")
    return cast(Mapping[str, object], v)


def _keys(m: Mapping[str, object], allowed: set[str], where: str) -> None:
    unknown = sorted(set(m) - allowed)
    if unknown:
        raise CaseError(f"{where}: unknown field(s) {', '.join(unknown)}")


def _ns_name(v: object, where: str) -> str:
    m = _map(v, where)
    _keys(m, {"name", "namespace"}, where)
    return f"{m['namespace']}/{m['name']}"


def _via(v: object, where: str) -> Via:
    m = _map(v, where)
    _keys(m, {"kind", "namespace", "name", "port", "fromNamespace"}, where)
    if m.get("kind") not in ("Gateway", "Service"):
        raise CaseError(f"{where}.kind: Gateway or Service, got {m.get('kind')!r}")
    return Via(
        kind=str(m["kind"]),
        namespace=str(m["namespace"]),
        name=str(m["name"]),
        port=int(cast(int, m["port"])),
        from_namespace=str(m["fromNamespace"]) if "fromNamespace" in m else None,
    )


def _request(v: object, where: str) -> Request:
    m = _map(v, where)
    _keys(m, {"url", "method", "headers", "sni", "websocket"}, where)
    headers: list[tuple[str, str]] = []
    for k, val in _map(m.get("headers", {}), f"{where}.headers").items():
        for one in val if isinstance(val, list) else [val]:
            headers.append((k, str(one)))
    return Request(
        url=str(m["url"]),
        method=str(m.get("method", "GET")),
        headers=tuple(headers),
        sni=str(m["sni"]) if "sni" in m else None,
        websocket=bool(m.get("websocket", False)),
    )


_EXPECT = {
    "status", "backend", "path", "host", "requestHeaders", "absentRequestHeaders",
    "responseHeaders", "absentResponseHeaders", "redirect", "sample", "mirrors",
    "attempts", "certificate", "maxMillis", "minMillis",
}  # fmt: skip


def _expect(v: object, where: str) -> Expect:
    m = _map(v, where)
    _keys(m, _EXPECT, where)
    sample = None
    if "sample" in m:
        s = _map(m["sample"], f"{where}.sample")
        _keys(
            s, {"requests", "weights", "tolerance", "mirrors", "backendHeader"}, f"{where}.sample"
        )
        weights = {str(k): int(cast(int, w)) for k, w in _map(s["weights"], where).items()}
        mirrors = {str(k): int(cast(int, n)) for k, n in _map(s.get("mirrors", {}), where).items()}
        sample = Sample(
            int(cast(int, s["requests"])),
            weights,
            int(cast(int, s["tolerance"])),
            mirrors,
            str(s["backendHeader"]) if "backendHeader" in s else None,
        )

    def strs(key: str) -> dict[str, str]:
        return {str(k): str(x) for k, x in _map(m.get(key, {}), f"{where}.{key}").items()}

    return Expect(
        status=int(cast(int, m["status"])) if "status" in m else None,
        backend=_ns_name(m["backend"], f"{where}.backend") if "backend" in m else None,
        path=str(m["path"]) if "path" in m else None,
        host=str(m["host"]) if "host" in m else None,
        request_headers=strs("requestHeaders"),
        absent_request_headers=tuple(cast(list[str], m.get("absentRequestHeaders", []))),
        response_headers=strs("responseHeaders"),
        absent_response_headers=tuple(cast(list[str], m.get("absentResponseHeaders", []))),
        redirect=_map(m["redirect"], f"{where}.redirect") if "redirect" in m else None,
        sample=sample,
        mirrors=tuple(cast(list[str], m.get("mirrors", []))),
        attempts={str(k): int(cast(int, n)) for k, n in _map(m.get("attempts", {}), where).items()},
        certificate=str(m["certificate"]) if "certificate" in m else None,
        max_ms=int(cast(int, m["maxMillis"])) if "maxMillis" in m else None,
        min_ms=int(cast(int, m["minMillis"])) if "minMillis" in m else None,
    )


def _test(v: object, where: str) -> UpstreamTest:
    m = _map(v, where)
    _keys(m, {"name", "features", "xfail", "cases"}, where)
    raw_cases = m.get("cases")
    if not isinstance(raw_cases, list) or not raw_cases:
        raise CaseError(f"{where}.cases: expected a non-empty list")
    cases = []
    for i, c in enumerate(raw_cases):
        cw = f"{where}.cases[{i}]"
        cm = _map(c, cw)
        _keys(cm, {"name", "via", "request", "expect"}, cw)
        cases.append(
            Case(
                name=str(cm["name"]),
                via=_via(cm["via"], f"{cw}.via"),
                request=_request(cm["request"], f"{cw}.request"),
                expect=_expect(cm["expect"], f"{cw}.expect"),
            )
        )
    return UpstreamTest(
        name=str(m["name"]),
        features=tuple(str(f) for f in cast(list[str], m["features"])),
        cases=tuple(cases),
        xfail=str(m["xfail"]) if "xfail" in m else None,
    )


def load_folder(path: Path) -> Folder:
    """The folder's manifests and tests; `CaseError` names the file and field at fault."""
    where = f"{path.name}/conformance.yaml"
    try:
        doc = _map(yaml.safe_load((path / "conformance.yaml").read_text()), where)
        _keys(doc, {"tests", "secrets"}, where)
        tests = tuple(
            _test(t, f"{where} tests[{i}]") for i, t in enumerate(cast(list[object], doc["tests"]))
        )
        secrets = tuple(
            SecretSpec(str(s["namespace"]), str(s["name"]), tuple(s["hosts"]))
            for s in cast(list[dict[str, list[str]]], doc.get("secrets", []))
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CaseError(f"{where}: {type(exc).__name__}: {exc}") from exc
    return Folder(path, (path / "manifests.yaml").read_text(), tests, secrets)
