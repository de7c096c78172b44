"""The upstream Gateway API examples: valid ones pass, invalid ones fail at the right field.

Each file is validated on its own, twice: with the built-in rules (no CRD files) and through
the reference CRDs with jsonschema + cel-python (`crds=`), experimental CRDs for
`experimental/` files and standard CRDs for `standard/` files. Both paths must agree.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from tests.conftest import GATEWAY_API, require_reference
from turnout.engine.diagnostics import Diagnostic, Severity
from turnout.engine.model import load_documents
from turnout.engine.validate import (
    Channel,
    CRDSet,
    load_crds,
    validate_paths,
    validate_with_crds,
)

VALID = GATEWAY_API / "valid-examples"
INVALID = GATEWAY_API / "invalid-examples"

EXPECTED_FIELD: dict[str, str] = {
    "experimental/httproute/invalid-filter-externalauth-bad-http-path.yaml": (
        "spec.rules[0].filters[0].externalAuth.http.path"
    ),
    "experimental/httproute/invalid-filter-externalauth-empty.yaml": "spec.rules[0].filters[0]",
    "experimental/httproute/invalid-filter-externalauth-no-protocol.yaml": (
        "spec.rules[0].filters[0].externalAuth.protocol"
    ),
    "experimental/httproute/invalid-header-value.yaml": (
        "spec.rules[0].filters[0].responseHeaderModifier.add[0].value"
    ),
    "standard/gateway/duplicate-listeners.yaml": "spec.listeners",
    "standard/gateway/hostname-tcp.yaml": "spec.listeners",
    "standard/gateway/hostname-udp.yaml": "spec.listeners",
    "standard/gateway/invalid-addresses.yaml": "spec.addresses[0]",
    "standard/gateway/invalid-listener-name.yaml": "spec.listeners[0].name",
    "standard/gateway/invalid-listener-port.yaml": "spec.listeners[0].port",
    "standard/gateway/invalid-tls-mode.yaml": "spec.listeners",
    "standard/gateway/tlsconfig-tcp.yaml": "spec.listeners",
    "standard/gatewayclass/invalid-controller.yaml": "spec.controllerName",
    "standard/httproute/duplicate-header-match.yaml": "spec.rules[0].matches[0].headers[1]",
    "standard/httproute/duplicate-query-match.yaml": "spec.rules[0].matches[0].queryParams[1]",
    "standard/httproute/httproute-portless-backend.yaml": "spec.rules[0].backendRefs[0]",
    "standard/httproute/httproute-portless-service.yaml": "spec.rules[0].backendRefs[0]",
    "standard/httproute/invalid-backend-group.yaml": "spec.rules[0].backendRefs[0].group",
    "standard/httproute/invalid-backend-kind.yaml": "spec.rules[0].backendRefs[0].kind",
    "standard/httproute/invalid-backend-port.yaml": "spec.rules[0].backendRefs[0].port",
    "standard/httproute/invalid-filter-duplicate-header.yaml": (
        "spec.rules[0].filters[0].requestHeaderModifier.remove[1]"
    ),
    "standard/httproute/invalid-filter-duplicate.yaml": "spec.rules[0].filters",
    "standard/httproute/invalid-filter-empty.yaml": "spec.rules[0].filters[0]",
    "standard/httproute/invalid-filter-wrong-field.yaml": "spec.rules[0].filters[0]",
    "standard/httproute/invalid-header-name.yaml": "spec.rules[0].matches[0].headers[0].name",
    "standard/httproute/invalid-hostname.yaml": "spec.hostnames[0]",
    "standard/httproute/invalid-httpredirect-hostname.yaml": (
        "spec.rules[0].filters[0].requestRedirect.hostname"
    ),
    "standard/httproute/invalid-method.yaml": "spec.rules[0].matches[0].method",
    "standard/httproute/invalid-path-alphanum-specialchars-mix.yaml": "spec.rules[0].matches[0].path",
    "standard/httproute/invalid-path-specialchars.yaml": "spec.rules[0].matches[0].path",
    "standard/httproute/invalid-request-redirect-with-backendref.yaml": "spec.rules[0]",
    "standard/referencegrant/missing-from.yaml": "spec.from",
    "standard/referencegrant/missing-ns.yaml": "spec.from[0].namespace",
    "standard/referencegrant/missing-to.yaml": "spec.to",
    "standard/tlsroute/invalid-hostname.yaml": "spec.hostnames[0]",
    "standard/tlsroute/no-hostname.yaml": "spec.hostnames",
}
"""Invalid example (relative to invalid-examples/) -> the field its error must point at."""


def _examples(root: Path) -> list[Path]:
    return sorted(root.rglob("*.yaml")) if root.is_dir() else []


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _channel(rel: str) -> Channel:
    return "standard" if rel.startswith("standard/") else "experimental"


@cache
def _crds(channel: Channel) -> CRDSet:
    crds, diags = load_crds([str(GATEWAY_API / "crd" / channel)])
    assert not diags
    return crds


def _errors(diags: tuple[Diagnostic, ...]) -> list[Diagnostic]:
    return [d for d in diags if d.severity is Severity.ERROR]


def _run(path: Path, rel: str, *, with_crds: bool) -> tuple[Diagnostic, ...]:
    """Built-in: load + model schema + built-in rules. CRDs: jsonschema + CEL alone, so the
    CRD path is judged on its own findings."""
    channel = _channel(rel)
    if not with_crds:
        return validate_paths([str(path)], channel=channel).diagnostics
    docs, load_diags = load_documents([str(path)])
    return (*load_diags, *validate_with_crds(docs, _crds(channel)))


CRD_PATHS = [pytest.param(False, id="builtin"), pytest.param(True, id="crds")]


@pytest.mark.parametrize("with_crds", CRD_PATHS)
@pytest.mark.parametrize("path", _examples(VALID), ids=lambda p: _rel(p, VALID))
def test_valid_example_has_no_errors(path: Path, with_crds: bool) -> None:
    require_reference(VALID)
    diags = _run(path, _rel(path, VALID), with_crds=with_crds)
    assert _errors(diags) == []
    assert not [d for d in diags if d.reason == "CELUnsupported"]


@pytest.mark.parametrize("with_crds", CRD_PATHS)
@pytest.mark.parametrize("path", _examples(INVALID), ids=lambda p: _rel(p, INVALID))
def test_invalid_example_fails_at_the_expected_field(path: Path, with_crds: bool) -> None:
    require_reference(INVALID)
    rel = _rel(path, INVALID)
    assert rel in EXPECTED_FIELD, (
        f"new upstream invalid example {rel!r}: add its expected field path to EXPECTED_FIELD"
    )
    errors = _errors(_run(path, rel, with_crds=with_crds))
    assert errors, f"{rel} must be rejected"
    paths = [d.pos.path for d in errors]
    assert EXPECTED_FIELD[rel] in paths, f"{rel}: no error at {EXPECTED_FIELD[rel]}: {paths}"


def test_every_expected_field_entry_names_an_existing_example() -> None:
    require_reference(INVALID)
    present = {_rel(p, INVALID) for p in _examples(INVALID)}
    assert sorted(set(EXPECTED_FIELD) - present) == []


def test_reference_examples_are_present_when_the_shared_folder_is() -> None:
    require_reference(GATEWAY_API)
    assert _examples(VALID) and _examples(INVALID)
