"""The pipeline: files (or parsed objects) -> validation -> compile.

```
compile_files     validate_paths (load, parse, built-in schema and CEL rules, our crds/ and
                  --crds) -> drop invalid objects -> smi_to_routes -> compile_table
compile_snapshot  parsed objects (the Kubernetes source) -> built-in rules -> drop invalid
                  -> smi_to_routes -> compile_table (+ compile_policy, what the control plane
                  serves with the table); each dropped object is `Rejected`
IncrementalCompiler  a watched directory, per file: unchanged files keep their validated
                  objects; a file with errors is `Rejected` and keeps its last good version
                  (or is left out if it never was good); every other file is compiled,
                  incrementally (`compile.incremental.IncrementalTable`, docs/compile.md)
SnapshotCompiler  compile_snapshot for the Kubernetes source's stream of snapshots: the
                  same result, reusing per object what did not change, compiled incrementally
```
`compile_files` is what `mesh validate/routes/explain/test` and the golden tests run: an
object with an error is left out of the compile, exactly as the API server would have
refused it, and its errors are in the diagnostics. Only this module and the sources do file
I/O in the engine.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from turnout.adapters.policy import PolicyResult, compile_policy
from turnout.adapters.smi import smi_to_routes
from turnout.engine.compile import (
    DEFAULT_COMPILE_OPTIONS,
    CompileOptions,
    CompileResult,
    compile_table,
)
from turnout.engine.compile.incremental import IncrementalTable
from turnout.engine.compile.peer_modes import without_disabled_identities
from turnout.engine.diagnostics import (
    Diagnostic,
    Severity,
    SourcePos,
    error,
    has_errors,
    sorted_diagnostics,
)
from turnout.engine.errors import LimitExceeded, LoadError
from turnout.engine.model import Document, Loaded, Resource, Resources
from turnout.engine.model.authz import PeerAuthentication
from turnout.engine.model.kinds import merge_objects, split_api_version
from turnout.engine.model.limits import (
    DEFAULT_LIMITS,
    ManifestLimits,
    manifest_text,
    read_manifest_bytes,
)
from turnout.engine.model.loader import expand_paths
from turnout.engine.policy_reads import SMI_KINDS, PolicyCache, policy_reads
from turnout.engine.render import diagnostic_data, result_data, to_data
from turnout.engine.validate import CRDSet, load_crds, validate_paths, validate_resources
from turnout.engine.validate.pieces import FileReport, Piece, validate_pieces, without_raw
from turnout.engine.validate.rules import validate_object

OWN_CRDS = Path(str(resources.files("turnout.engine") / "crds"))
"""Turnout's own CRDs (package data; `crds/` in a clone): their schemas and CEL rules always
apply."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Inputs:
    documents: tuple[Document, ...]
    """The raw documents read; () from `IncrementalCompiler`, which keeps none."""
    resources: Resources
    """Objects that passed validation (the compiler's input)."""
    diagnostics: tuple[Diagnostic, ...]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while a batch allocates many long-lived objects.

    Parsing and compiling 10k routes allocates millions of objects that all stay alive;
    each generation-2 pass would walk all of them again, which made 10k routes cost 20x
    what 1k did. Reference counting still frees garbage; one collection runs afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_inputs(
    paths: Sequence[str], *, crds: Sequence[str] = (), limits: ManifestLimits = DEFAULT_LIMITS
) -> Inputs:
    """Load and validate; raises `LoadError` only when a file cannot be read at all, or
    `LimitExceeded` when one is over a cap (`engine.model.limits`)."""
    with gc_paused():
        return _load_inputs(paths, crds=crds, limits=limits)


def _load_inputs(paths: Sequence[str], *, crds: Sequence[str], limits: ManifestLimits) -> Inputs:
    report = validate_paths(paths, crds=[str(OWN_CRDS), *crds], limits=limits)
    diags = list(report.diagnostics)
    resources = smi_to_routes(drop_invalid(report.resources, diags), diags)
    return Inputs(
        documents=report.documents,
        resources=resources,
        diagnostics=tuple(sorted_diagnostics(diags)),
    )


def drop_invalid(resources: Resources, diagnostics: Sequence[Diagnostic]) -> Resources:
    """The objects none of whose documents has an error (the API server would refuse them)."""
    bad = {
        (d.pos.file, d.pos.doc_index, _item(d.pos.path))
        for d in diagnostics
        if d.severity is Severity.ERROR
    }
    if not bad:
        return resources
    return Resources(
        tuple(
            o
            for o in resources.objects
            if (o.pos.file, o.pos.doc_index, _item(o.pos.path)) not in bad
        )
    )


def compile_snapshot(
    resources: Resources,
    diagnostics: Sequence[Diagnostic] = (),
    *,
    options: CompileOptions = DEFAULT_COMPILE_OPTIONS,
) -> CompiledInputs:
    """Compile objects that are already parsed (the Kubernetes source's snapshots): the
    built-in rules run again, objects with errors are left out (each one `Rejected`), the
    rest is compiled."""
    with gc_paused():
        diags = [*diagnostics, *validate_resources(resources)]
        kept = smi_to_routes(drop_invalid(resources, diags), diags)
        findings = [d for d in diags if d.severity is not Severity.ERROR]
        inputs = Inputs(
            documents=(), resources=kept, diagnostics=tuple(sorted_diagnostics(findings))
        )
        return with_policy(
            CompiledInputs(
                inputs=inputs,
                result=compile_table(kept, options=options),
                rejected=rejected_by_file(diags),
            ),
            compile_policy(kept),
        )


@dataclass(slots=True)
class SnapshotCompiler:
    """`compile_snapshot` for one source's stream of snapshots (the Kubernetes source): the
    same result, with what did not change since the last snapshot reused. An object that is
    the same object as before keeps its built-in rule findings; the compile is incremental
    (`IncrementalTable`); the policy is recompiled only when an object it reads changed.
    Not thread-safe: the control plane compiles one snapshot at a time."""

    options: CompileOptions = DEFAULT_COMPILE_OPTIONS
    _table: IncrementalTable | None = None
    _checked: dict[int, _Checked] = field(default_factory=dict)
    _policy: PolicyCache = field(default_factory=lambda: PolicyCache())

    def __call__(
        self, resources: Resources, diagnostics: Sequence[Diagnostic] = ()
    ) -> CompiledInputs:
        if self._table is None:
            self._table = IncrementalTable(
                options=self.options, verify_every=verify_every_from_env()
            )
        with gc_paused():
            checked: dict[int, _Checked] = {}
            found: list[Diagnostic] = []
            smi = False
            for o in resources.objects:
                hit = self._checked.get(id(o))
                if hit is None or hit.obj is not o:
                    hit = _Checked(
                        o, validate_object(o), policy_reads(o), isinstance(o.obj, SMI_KINDS)
                    )
                checked[id(o)] = hit
                found.extend(hit.findings)
                smi |= hit.smi
            self._checked = checked
            diags = [*diagnostics, *sorted_diagnostics(found)]
            kept = drop_invalid(resources, diags)
            if smi:
                kept = smi_to_routes(kept, diags)
            findings = [d for d in diags if d.severity is not Severity.ERROR]
            inputs = Inputs(
                documents=(), resources=kept, diagnostics=tuple(sorted_diagnostics(findings))
            )
            if smi:
                policy = compile_policy(kept)
            else:  # objects dropped as invalid are not read
                reads = (checked[id(o)] for o in kept.objects)
                policy = self._policy.of_reads(tuple(c.obj for c in reads if c.policy))
            return with_policy(
                CompiledInputs(
                    inputs=inputs,
                    result=self._table.compile(kept),
                    rejected=rejected_by_file(diags),
                ),
                policy,
            )


class _Checked(NamedTuple):
    """What `SnapshotCompiler` keeps of an object between snapshots."""

    obj: Loaded[Resource]
    findings: list[Diagnostic]
    policy: bool
    """`policy_reads(obj)`."""
    smi: bool


def with_policy(compiled: CompiledInputs, policy: PolicyResult) -> CompiledInputs:
    """The control plane's compile with its policy; endpoints of ports whose mTLS mode is
    DISABLE are served without their identity (`compile/peer_modes.py`)."""
    result = compiled.result
    table = without_disabled_identities(result.table, policy.table, compiled.inputs.resources)
    if table is not result.table:
        result = dataclasses.replace(result, table=table)
    return dataclasses.replace(compiled, result=result, policy=policy)


def rejected_by_file(diagnostics: Sequence[Diagnostic]) -> tuple[Rejected, ...]:
    """One `Rejected` (left out) per file that has an error, with that file's errors."""
    errors: dict[str, list[Diagnostic]] = {}
    for d in diagnostics:
        if d.severity is Severity.ERROR:
            errors.setdefault(d.pos.file, []).append(d)
    return tuple(
        Rejected(file=f, kept=False, diagnostics=tuple(sorted_diagnostics(ds)))
        for f, ds in sorted(errors.items())
    )


def _item(path: str) -> str:
    """``items[3].spec...`` -> ``items[3]``; a plain document -> ""."""
    if path.startswith("items["):
        return path.split("]", 1)[0] + "]"
    return ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected:
    """An input (a file, or a Kubernetes object ``k8s:<Kind>/<ns>/<name>``) held back."""

    file: str
    kept: bool
    """True: its last good version is compiled instead; False: it is left out (it never was
    good, or it is an object the API server source has only in its new version)."""
    diagnostics: tuple[Diagnostic, ...]
    """Why: its errors (an unreadable file has one, reason `FileUnreadable`; one over a cap,
    `LimitExceeded`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CompiledInputs:
    inputs: Inputs
    result: CompileResult
    rejected: tuple[Rejected, ...] = ()
    """Inputs held back from this compile, by file; their errors are here, not in
    `inputs.diagnostics`. Only the control plane's compiles reject (`compile_files` leaves
    invalid objects out and reports them in the diagnostics)."""
    policy: PolicyResult | None = None
    """The authorization policy of the same objects (the control plane's compiles, which
    serve it); None = not compiled (`compile_files`)."""

    @property
    def diagnostics(self) -> tuple[Diagnostic, ...]:
        policy = () if self.policy is None else self.policy.diagnostics
        return tuple(
            sorted_diagnostics([*self.inputs.diagnostics, *self.result.diagnostics, *policy])
        )


def compile_files(
    paths: Sequence[str | Path],
    *,
    crds: Sequence[str] = (),
    limits: ManifestLimits = DEFAULT_LIMITS,
) -> CompiledInputs:
    inputs = load_inputs([str(p) for p in paths], crds=crds, limits=limits)
    with gc_paused():
        result = compile_table(inputs.resources)
        if any(isinstance(o.obj, PeerAuthentication) for o in inputs.resources.objects):
            policy = compile_policy(inputs.resources).table
            table = without_disabled_identities(result.table, policy, inputs.resources)
            result = dataclasses.replace(result, table=table)
    return CompiledInputs(inputs=inputs, result=result)


def compile_policy_files(
    paths: Sequence[str | Path],
    *,
    crds: Sequence[str] = (),
    limits: ManifestLimits = DEFAULT_LIMITS,
) -> tuple[Inputs, PolicyResult]:
    """Load and validate as `compile_files` does, then compile the authorization policy."""
    inputs = load_inputs([str(p) for p in paths], crds=crds, limits=limits)
    return inputs, compile_policy(inputs.resources)


def policy_golden_data(inputs: Inputs, result: PolicyResult, *, root: Path) -> dict[str, object]:
    """What a golden policy `.out.yaml` holds: the policy table and every diagnostic."""
    diags = sorted_diagnostics([*inputs.diagnostics, *result.diagnostics])
    return {
        "policy": to_data(result.table),
        "diagnostics": [diagnostic_data(d, root=root) for d in diags],
    }


ObjectKey = tuple[str, str, str, str]


def object_key(o: Loaded[Resource]) -> ObjectKey:
    """What `merge_objects` keeps one object per (the group keeps Linkerd's and Istio's
    AuthorizationPolicy apart)."""
    obj = o.obj
    return (obj.kind, obj.metadata.namespace or "", obj.name, split_api_version(obj.api_version)[0])


@dataclass(slots=True)
class _FileEntry:
    stamp: bytes
    """Digest of the file's bytes when it was read (mtime and size can both stay the same
    across an edit within one clock tick, e.g. weights 10/90 -> 20/80)."""
    resources: tuple[Loaded[Resource], ...]
    """Validated objects, without their raw YAML (`_without_raw`)."""
    diagnostics: tuple[Diagnostic, ...]
    stat: tuple[int, int, int, int] = (0, 0, 0, 0)
    """(mtime, ctime, size, inode) when it was read."""
    settled: bool = False
    """Its mtime was older than `SETTLE_NS` when read: an edit since must have moved the
    mtime or ctime, so an equal `stat` proves the bytes unchanged without reading them
    (git's "racily clean" rule). A file modified just before the read is hashed again."""
    keys: tuple[ObjectKey, ...] = ()
    """`object_key` of each of `resources` (merging files is then a dict update)."""
    smi: bool = False
    """It holds a TrafficSplit (or a synthesized route): `smi_to_routes` must run."""
    policy: tuple[Loaded[Resource], ...] = ()
    """What of it `compile_policy` reads: everything but the routes without a Server
    parent (the policy adapter reads routes only through a Server parentRef)."""
    pieces: tuple[Piece, ...] = ()
    """Its documents as validated (`validate_pieces`): the next read of an edited version
    reuses those whose text did not change. Empty for JSON, which is read whole."""


VERIFY_ENV = "TURNOUT_VERIFY_INCREMENTAL"
"""Check every Nth incremental compile against a full `compile_table`, serving the full
one (and starting over) when they differ; 0 or unset: never (docs/compile.md)."""


def verify_every_from_env() -> int:
    text = os.environ.get(VERIFY_ENV, "").strip()
    return int(text) if text.isdigit() else 0


SETTLE_NS = 2_000_000_000
"""How old a file's mtime must be for its `stat` alone to vouch for its bytes (coarse
filesystem timestamps tick at 1 s at worst; 2 s covers one tick plus clock skew)."""


def _stat_of(file: str) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(file)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


@dataclass(slots=True)
class IncrementalCompiler:
    """`compile_files` for a watched directory: files whose content did not change
    keep their parsed and validated objects (a settled file whose stat did not change is
    not even read), and the compile is incremental (`IncrementalTable`, equal to
    `compile_table` of the same objects): one edited route among 10,000 costs its own document's
    read, parse and validation (`validate_pieces`) plus the recompile of that route and its
    parent.

    A file with an error (its own, or one the compiler finds in it) is `Rejected`, as the
    API server rejects one bad object and accepts the rest: its last good version is
    compiled in its place, or nothing if it never was good, and every other file is
    applied. Per-object validation does not depend on other objects, which is what makes
    the reuse exact; cross-file duplicates are found again on every call. A file that
    cannot be read, or is over a cap of `limits`, is rejected the same way."""

    crds: Sequence[str] = ()
    limits: ManifestLimits = DEFAULT_LIMITS
    _cache: dict[str, _FileEntry] = field(default_factory=dict)
    _good: dict[str, _FileEntry] = field(default_factory=dict)
    """The last version of each file that was compiled without an error."""
    _crd_set: CRDSet | None = None
    _table: IncrementalTable = field(
        default_factory=lambda: IncrementalTable(verify_every=verify_every_from_env())
    )
    """The compile itself, incremental: only routes whose inputs changed are recompiled
    (`engine.compile.incremental`; equal to `compile_table` of the same objects)."""
    _policy: PolicyCache = field(default_factory=lambda: PolicyCache())

    def __call__(self, paths: Sequence[str | Path]) -> CompiledInputs:
        with gc_paused():
            return self._compile([str(p) for p in paths])

    def _compile(self, paths: list[str]) -> CompiledInputs:
        if self._crd_set is None:
            self._crd_set, _ = load_crds([str(OWN_CRDS), *self.crds])
        fresh: dict[str, _FileEntry] = {}
        rejected: dict[str, Rejected] = {}
        for file in expand_paths(paths):
            entry = self._read(file)
            if isinstance(entry, Rejected):
                rejected[file] = entry
            else:
                fresh[file] = entry
        self._cache = fresh
        chosen = {f: e for f, e in fresh.items() if not has_errors(e.diagnostics)}
        for file, entry in fresh.items():
            if file not in chosen:
                rejected[file] = self._hold_back(file, entry.diagnostics, chosen)
        for file in rejected:  # unreadable ones too: their last good version, if any
            if file in self._good and file not in chosen:
                chosen[file] = self._good[file]
        while True:
            compiled = _compile_entries(chosen, self._table)
            bad = _compile_errors(compiled, chosen, self._good)
            if not bad:
                break
            for file, errors in bad.items():
                own = fresh[file].diagnostics if file in fresh else ()
                del chosen[file]
                rejected[file] = self._hold_back(file, (*own, *errors), chosen)
        self._good = chosen
        return with_policy(
            dataclasses.replace(compiled, rejected=tuple(rejected[f] for f in sorted(rejected))),
            self._compile_policy(chosen, compiled.inputs.resources),
        )

    def _compile_policy(self, chosen: dict[str, _FileEntry], resources: Resources) -> PolicyResult:
        """`compile_policy(resources)`, from the objects it reads, cached while those are
        the same objects (a route edit then costs no policy compile)."""
        if any(e.smi for e in chosen.values()):
            return compile_policy(resources)
        kept = set(map(id, resources.objects))
        return self._policy.of_reads(
            tuple(o for e in chosen.values() for o in e.policy if id(o) in kept)
        )

    def _read(self, file: str) -> _FileEntry | Rejected:
        """The file's entry, from the cache when its bytes did not change (not even read
        when its `stat` did not change since a settled read)."""
        entry = self._cache.get(file)
        stat = _stat_of(file)
        if entry is not None and entry.settled and stat is not None and entry.stat == stat:
            return entry
        try:
            data = read_manifest_bytes(file, limits=self.limits)
            stamp = hashlib.blake2b(data, digest_size=16).digest()
            settled = stat is not None and stat[0] < time.time_ns() - SETTLE_NS
            if entry is not None and entry.stamp == stamp:
                entry.stat, entry.settled = stat or (0, 0, 0, 0), settled
                return entry
            report = self._validate(file, data, entry.pieces if entry is not None else ())
        except LoadError as exc:
            reason = "LimitExceeded" if isinstance(exc, LimitExceeded) else "FileUnreadable"
            why = error(reason, exc.message, SourcePos(file, exc.doc_index or 0))
            return Rejected(file=file, kept=file in self._good, diagnostics=(why,))
        objects = report.resources.objects
        return _FileEntry(
            stamp=stamp,
            resources=objects,
            diagnostics=report.diagnostics,
            pieces=report.pieces,
            stat=stat or (0, 0, 0, 0),
            settled=settled,
            keys=tuple(object_key(o) for o in objects),
            smi=any(isinstance(o.obj, SMI_KINDS) for o in objects),
            policy=tuple(o for o in objects if policy_reads(o)),
        )

    def _validate(self, file: str, data: bytes, known: tuple[Piece, ...]) -> FileReport:
        """`validate_paths([file])` of these bytes, reusing the documents of `known` whose
        text did not change (`validate_pieces`); JSON is validated whole."""
        text = manifest_text(data, file)
        report = validate_pieces(
            text, file=file, known=known, crds=self._crd_set, limits=self.limits
        )
        if report is not None:
            return report
        whole = validate_paths([file], crds=self._crd_set, limits=self.limits)
        objects = tuple(without_raw(o) for o in whole.resources.objects)
        return FileReport(Resources(objects), whole.diagnostics, ())

    def _hold_back(
        self, file: str, diagnostics: Sequence[Diagnostic], chosen: dict[str, _FileEntry]
    ) -> Rejected:
        good = self._good.get(file)
        if good is not None:
            chosen[file] = good
        errors = tuple(d for d in sorted_diagnostics(diagnostics) if d.severity is Severity.ERROR)
        return Rejected(file=file, kept=good is not None, diagnostics=errors)


def _compile_entries(entries: dict[str, _FileEntry], table: IncrementalTable) -> CompiledInputs:
    diags = [d for e in entries.values() for d in e.diagnostics]
    merged = _merged(entries, diags)
    resources = drop_invalid(merged, diags)
    if any(e.smi for e in entries.values()):
        resources = smi_to_routes(resources, diags)
    inputs = Inputs(documents=(), resources=resources, diagnostics=tuple(sorted_diagnostics(diags)))
    return CompiledInputs(inputs=inputs, result=table.compile(resources))


def _merged(entries: dict[str, _FileEntry], diags: list[Diagnostic]) -> Resources:
    """`merge_objects` of the entries' objects: a dict update per file with the keys read
    with it; the same function, for its warnings, only when two objects share a key."""
    by_key: dict[ObjectKey, Loaded[Resource]] = {}
    total = 0
    for e in entries.values():
        by_key.update(zip(e.keys, e.resources, strict=True))
        total += len(e.keys)
    if len(by_key) != total:
        return merge_objects((o for e in entries.values() for o in e.resources), diags)
    return Resources(tuple(by_key.values()))


def _compile_errors(
    compiled: CompiledInputs, chosen: dict[str, _FileEntry], good: dict[str, _FileEntry]
) -> dict[str, list[Diagnostic]]:
    """Errors the compile found in files compiled in a new version (a last good version
    compiled without them before), by file."""
    out: dict[str, list[Diagnostic]] = {}
    # Unsorted (`compiled.diagnostics` sorts them all): `_hold_back` sorts what it keeps.
    for d in (*compiled.inputs.diagnostics, *compiled.result.diagnostics):
        f = d.pos.file
        if d.severity is Severity.ERROR and f in chosen and chosen[f] is not good.get(f):
            out.setdefault(f, []).append(d)
    return out


def golden_data(compiled: CompiledInputs, *, root: Path) -> dict[str, object]:
    """What a golden compile `.out.yaml` holds: table, status and diagnostics."""
    r = compiled.result
    return result_data(
        r.table, r.statuses, compiled.diagnostics, root=root, gateways=r.gateway_statuses
    )
