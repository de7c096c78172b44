"""The entry points `mesh validate` calls: files in, every diagnostic out.

```
validate_paths(paths, crds=...)                              -> ValidationReport
  load_documents(paths)            load diagnostics (bad YAML, not a mapping)
  parse_documents(docs)            schema diagnostics (the pydantic models restate the CRDs)
  validate_documents(docs, resources, crds=...)
     validate_resources(resources)    built-in CEL-equivalent + list-map rules  (validate.rules)
     validate_with_crds(docs, crds)   jsonschema + CEL from CRD files, when given (validate.crds)
```

All diagnostics of all stages end up in one sorted list without exact duplicates; the built-in
rules and the CRD path word the same finding the same way, so a finding both report shows once.
Nothing here prints or raises for a user error; an unreadable file raises `LoadError`, and a
file over a cap (size, alias expansion, nesting: `engine.model.limits`) `LimitExceeded`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from turnout.engine.diagnostics import Diagnostic, Severity, has_errors, sorted_diagnostics
from turnout.engine.model.kinds import Resources, parse_documents
from turnout.engine.model.limits import DEFAULT_LIMITS, ManifestLimits
from turnout.engine.model.loader import Document, load_documents
from turnout.engine.validate.common import Channel
from turnout.engine.validate.crds import CRDSet, load_crds, validate_with_crds
from turnout.engine.validate.rules import validate_resources

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationReport:
    """What `validate_paths` found."""

    documents: tuple[Document, ...]
    """Every document read, in file order (items of a `kind: List` count one each)."""
    resources: Resources
    """The objects that parsed (unknown kinds and schema-invalid documents are absent)."""
    diagnostics: tuple[Diagnostic, ...]
    """Load, schema, built-in rule and CRD diagnostics; sorted, exact duplicates dropped."""

    @property
    def ok(self) -> bool:
        """True when no diagnostic is an error."""
        return not has_errors(self.diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity is Severity.ERROR]


def validate_documents(
    docs: Sequence[Document],
    resources: Resources,
    *,
    crds: CRDSet | None = None,
    channel: Channel = "experimental",
) -> list[Diagnostic]:
    """Built-in rules over `resources` and, with `crds`, the CRD schemas and CEL rules over
    the raw `docs` (the documents `resources` was parsed from). Sorted, deduplicated."""
    diags = validate_resources(resources, channel=channel)
    if crds is not None:
        diags += validate_with_crds(docs, crds)
    return sorted_diagnostics(diags)


def validate_paths(
    paths: Iterable[str],
    *,
    crds: str | Iterable[str] | CRDSet | None = None,
    channel: Channel = "experimental",
    limits: ManifestLimits = DEFAULT_LIMITS,
) -> ValidationReport:
    """Load, parse and validate every manifest under `paths` (files, directories, "-").

    `crds` names CRD files or directories (or is an already loaded `CRDSet`); with it each
    document of a kind they define is also checked with jsonschema and its CEL rules.
    `channel` selects the standard or experimental Gateway API rules for the built-in checks.
    `limits` caps each file and document (CRD files too).
    """
    docs, diags = load_documents(paths, limits=limits)
    resources, parse_diags = parse_documents(docs)
    diags += parse_diags
    crd_set: CRDSet | None
    if crds is None or isinstance(crds, CRDSet):
        crd_set = crds
    else:
        crd_set, crd_diags = load_crds([crds] if isinstance(crds, str) else crds, limits=limits)
        diags += crd_diags
    diags += validate_documents(docs, resources, crds=crd_set, channel=channel)
    report = ValidationReport(
        documents=tuple(docs), resources=resources, diagnostics=tuple(sorted_diagnostics(diags))
    )
    log.info(
        "validated documents=%d objects=%d diagnostics=%d",
        len(docs),
        len(resources.objects),
        len(report.diagnostics),
    )
    return report
