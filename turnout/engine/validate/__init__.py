"""Validation: documents and parsed objects in, diagnostics out.

```
paths --validate_paths--> ValidationReport(documents, resources, diagnostics)
           load_documents -> parse_documents (schema, engine.model)
           -> validate_resources   built-in rules: every CEL rule of the Gateway API CRDs
                                   (experimental channel) and their list-map / set uniqueness,
                                   restated in Python over the typed models; no files needed
           -> validate_with_crds   optional (`--crds FILE|DIR`): jsonschema + cel-python over
                                   the raw documents, straight from CRD YAML
```

Modules: `rules` (dispatch by kind), `httproute`, `grpcroute`, `gateway`, `filters`,
`common` (built-in rules); `crds`, `schema`, `cel` (the CRD path); `report` (entry points).
Every diagnostic points at a camelCase field path of the user's document. Nothing here
prints; `mesh validate` formats the report.
"""

from __future__ import annotations

from turnout.engine.validate.common import Channel
from turnout.engine.validate.crds import CRDSet, load_crds, validate_with_crds
from turnout.engine.validate.report import ValidationReport, validate_documents, validate_paths
from turnout.engine.validate.rules import validate_object, validate_resources

__all__ = [
    "CRDSet",
    "Channel",
    "ValidationReport",
    "load_crds",
    "validate_documents",
    "validate_object",
    "validate_paths",
    "validate_resources",
    "validate_with_crds",
]
