"""`--crds FILE|DIR`: validate raw documents against CustomResourceDefinitions.

```
load_crds(paths) --> CRDSet: (group, kind, version) -> CRDVersion(openAPIV3Schema, validator)
validate_with_crds(docs, crds):
  Document(raw) --lookup(apiVersion, kind)--> CRDVersion (served versions only; others skipped)
     --apply_defaults--> defaulted copy (CEL sees defaults, as on the API server)
     --jsonschema------> structural errors          (validate.schema)
     --list types------> FieldValueDuplicate errors  (validate.schema)
     --CEL walk--------> every x-kubernetes-validations rule at every instance location
                         (arrays: each item; maps: each value), `self` bound there
```

A CRD file may hold several documents; files that are not CRDs are ignored. A document
whose kind no loaded CRD defines is left alone (the built-in rules cover known kinds).
Diagnostics carry the document's own position and camelCase field paths, and the same
wording and reasons as the built-in rules, so the two paths can be compared and
deduplicated. A rule celpy cannot handle is reported once per (CRD, rule) as a
`CELUnsupported` warning; nothing here raises for a bad rule.

It does not check transition rules (`oldSelf`), `messageExpression`, or CEL cost limits.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

import jsonschema
from celpy import celtypes

from turnout.engine.diagnostics import Diagnostic, SourcePos, error, warning
from turnout.engine.model.kinds import split_api_version
from turnout.engine.model.limits import DEFAULT_LIMITS, BadYAML, ManifestLimits, load_yaml
from turnout.engine.model.loader import Document, expand_paths, read_text
from turnout.engine.validate.cel import CELEngine, CELRule, Failed, Unsupported, to_cel
from turnout.engine.validate.common import reason_for
from turnout.engine.validate.schema import (
    Schema,
    apply_defaults,
    list_errors,
    make_validator,
    props,
    structural_errors,
    sub,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class CRDVersion:
    """One served version of one CRD."""

    crd: str
    """The CRD's name, e.g. ``httproutes.gateway.networking.k8s.io``."""
    group: str
    kind: str
    version: str
    schema: Schema
    """The version's `openAPIV3Schema`."""
    validator: jsonschema.protocols.Validator


@dataclass
class CRDSet:
    """The loaded CRDs and the compiled CEL programs (cached across documents)."""

    versions: dict[tuple[str, str, str], CRDVersion] = field(default_factory=dict)
    """(group, kind, version) -> served CRD version."""
    engine: CELEngine = field(default_factory=CELEngine)
    reported: set[tuple[str, str]] = field(default_factory=set)
    """(CRD, rule) pairs already reported as unsupported."""

    def lookup(self, api_version: str, kind: str) -> CRDVersion | None:
        group, version = split_api_version(api_version)
        return self.versions.get((group, kind, version))


def load_crds(
    paths: Iterable[str], *, limits: ManifestLimits = DEFAULT_LIMITS
) -> tuple[CRDSet, list[Diagnostic]]:
    """Every served version of every CustomResourceDefinition in `paths` (files or dirs).

    Raises `LoadError` for an unreadable file (`LimitExceeded` over a cap); a CRD without a
    usable schema is an error diagnostic at its position.
    """
    crds = CRDSet()
    diags: list[Diagnostic] = []
    for file in expand_paths(paths):
        text = read_text(file, limits=limits)
        for index, doc in enumerate(load_yaml(text, file=file, limits=limits)):
            if isinstance(doc, BadYAML):
                diags.append(error("InvalidYAML", doc.message, SourcePos(file, index)))
            elif isinstance(doc, Mapping) and doc.get("kind") == "CustomResourceDefinition":
                _add_crd(crds, doc, SourcePos(file=file, doc_index=index), diags)
    log.info("crds loaded versions=%d", len(crds.versions))
    return crds, diags


def _add_crd(
    crds: CRDSet, doc: Mapping[str, object], pos: SourcePos, diags: list[Diagnostic]
) -> None:
    spec = doc.get("spec")
    meta = doc.get("metadata")
    if not isinstance(spec, Mapping) or not isinstance(spec.get("names"), Mapping):
        diags.append(error("InvalidCRD", "spec.names is missing", pos))
        return
    name = str(meta.get("name", "")) if isinstance(meta, Mapping) else ""
    group, kind = (
        str(spec.get("group", "")),
        str(cast(Mapping[str, object], spec["names"]).get("kind")),
    )
    versions = spec.get("versions")
    for i, v in enumerate(versions if isinstance(versions, list) else []):
        if not isinstance(v, Mapping) or not v.get("served"):
            continue
        schema = v.get("schema")
        root = schema.get("openAPIV3Schema") if isinstance(schema, Mapping) else None
        if not isinstance(root, Mapping):
            diags.append(error("InvalidCRD", "no openAPIV3Schema", pos.at(f"spec.versions[{i}]")))
            continue
        version = str(v.get("name"))
        crds.versions[(group, kind, version)] = CRDVersion(
            crd=name or f"{kind}.{group}",
            group=group,
            kind=kind,
            version=version,
            schema=root,
            validator=make_validator(root),
        )


def validate_with_crds(docs: Iterable[Document], crds: CRDSet) -> list[Diagnostic]:
    """Schema, list-type and CEL diagnostics for every document a loaded CRD defines."""
    out: list[Diagnostic] = []
    for doc in docs:
        api_version, kind = doc.raw.get("apiVersion"), doc.raw.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind, str):
            continue
        crd = crds.lookup(api_version, kind)
        if crd is not None:
            out.extend(validate_document(doc, crd, crds))
    return out


def validate_document(doc: Document, crd: CRDVersion, crds: CRDSet) -> list[Diagnostic]:
    """One document against one CRD version."""
    instance = apply_defaults(doc.raw, crd.schema)
    structural = structural_errors(crd.validator, instance, doc.pos)
    out = structural + list_errors(instance, crd.schema, doc.pos)
    walker = _CELWalk(crd=crd, crds=crds, lenient=bool(structural))
    walker.walk(instance, crd.schema, doc.pos)
    return out + walker.found


@dataclass
class _CELWalk:
    """Applies every rule at every instance location below a document."""

    crd: CRDVersion
    crds: CRDSet
    lenient: bool
    """The document already has schema errors: a rule that trips over them is not reported."""
    found: list[Diagnostic] = field(default_factory=list)

    def walk(self, value: object, schema: Schema, pos: SourcePos) -> None:
        self._rules(value, schema, pos)
        if isinstance(value, Mapping):
            declared = props(schema)
            extra = sub(schema, "additionalProperties")
            for key, v in value.items():
                sub_schema = declared.get(str(key)) or extra
                if sub_schema:
                    self.walk(v, sub_schema, pos.child(str(key)))
        elif isinstance(value, list):
            items = sub(schema, "items")
            if items:
                for i, v in enumerate(value):
                    self.walk(v, items, pos.child(f"[{i}]"))

    def _rules(self, value: object, schema: Schema, pos: SourcePos) -> None:
        rules = schema.get("x-kubernetes-validations")
        if not isinstance(rules, Sequence) or not rules:
            return
        cel_value = to_cel(value, schema)
        for entry in rules:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("rule"), str):
                continue
            rule = CELRule(
                rule=str(entry["rule"]),
                message=str(entry.get("message") or f"failed rule: {entry['rule']}"),
                reason=str(entry["reason"]) if entry.get("reason") else None,
            )
            if not rule.is_transition:
                self._apply(rule, cel_value, pos)

    def _apply(self, rule: CELRule, value: celtypes.Value, pos: SourcePos) -> None:
        outcome = self.crds.engine.evaluate(self.crd.crd, rule, value)
        if outcome is True:
            return
        if outcome is False:
            self.found.append(error(rule.reason or reason_for(rule.message), rule.message, pos))
        elif isinstance(outcome, Unsupported):
            key = (self.crd.crd, rule.rule)
            if key not in self.crds.reported:
                self.crds.reported.add(key)
                message = f"CEL rule not checked ({outcome.detail}): {rule.message}"
                self.found.append(warning("CELUnsupported", message, pos))
        elif isinstance(outcome, Failed) and not self.lenient:
            message = f"{rule.message} (rule evaluation error: {outcome.detail})"
            self.found.append(error("FieldValueInvalid", message, pos))
