"""The offline pipeline: files -> documents -> typed objects -> validation -> compile.

```
load_documents -> parse_documents -> validate (schema, CEL rules, --crds) -> drop invalid
objects -> compile_table
```
This is what `mesh validate/routes/explain/test` and the golden tests run. An object with an
error is left out of the compile, exactly as the API server would have refused it; its
errors are in the diagnostics. Only this module and the sources do file I/O in the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from turnout.engine.compile import CompileResult, compile_table
from turnout.engine.diagnostics import Diagnostic, Severity, sorted_diagnostics
from turnout.engine.model import Document, Resources, load_documents, parse_documents
from turnout.engine.render import result_data


@dataclass(frozen=True, slots=True, kw_only=True)
class Inputs:
    documents: tuple[Document, ...]
    resources: Resources
    """Objects that passed validation (the compiler's input)."""
    diagnostics: tuple[Diagnostic, ...]


def load_inputs(paths: Sequence[str], *, crds: Sequence[str] = ()) -> Inputs:
    """Load and validate; raises `LoadError` only when a file cannot be read at all."""
    docs, diags = load_documents(paths)
    resources, parse_diags = parse_documents(docs)
    diags.extend(parse_diags)
    diags.extend(_validate(docs, resources, crds=crds))
    bad = {
        (d.pos.file, d.pos.doc_index, _item(d.pos.path))
        for d in diags
        if d.severity is Severity.ERROR
    }
    kept = tuple(
        o for o in resources.objects if (o.pos.file, o.pos.doc_index, _item(o.pos.path)) not in bad
    )
    return Inputs(
        documents=tuple(docs),
        resources=Resources(kept),
        diagnostics=tuple(sorted_diagnostics(diags)),
    )


def _item(path: str) -> str:
    """``items[3].spec...`` -> ``items[3]``; a plain document -> ""."""
    if path.startswith("items["):
        return path.split("]", 1)[0] + "]"
    return ""


def _validate(docs: list[Document], resources: Resources, *, crds: Sequence[str]) -> list[Diagnostic]:
    try:  # TEMPORARY until engine.validate lands (the lead replaces this)
        from turnout.engine.validate import validate_all  # type: ignore[attr-defined]
    except ImportError:
        return []
    return validate_all(docs, resources, crds=crds)  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True, kw_only=True)
class CompiledInputs:
    inputs: Inputs
    result: CompileResult

    @property
    def diagnostics(self) -> tuple[Diagnostic, ...]:
        return tuple(sorted_diagnostics([*self.inputs.diagnostics, *self.result.diagnostics]))


def compile_files(paths: Sequence[str | Path], *, crds: Sequence[str] = ()) -> CompiledInputs:
    inputs = load_inputs([str(p) for p in paths], crds=crds)
    return CompiledInputs(inputs=inputs, result=compile_table(inputs.resources))


def golden_data(compiled: CompiledInputs, *, root: Path) -> dict[str, object]:
    """What a golden compile `.out.yaml` holds: table, status and diagnostics."""
    r = compiled.result
    return result_data(r.table, r.statuses, compiled.diagnostics, root=root)
