"""`mesh inject` and `mesh uninject` over manifests: each document in, the same document out
with the pod template changed (or not), and a report line per object.

```
read_inputs(files)   each file's documents (YAML, multi-document, or JSON; a List's
      │              items one by one); bad YAML or a document that is not an object
      │              -> LoadError naming the file and the document
      v
inject_document(doc, manual=...)   Deployment StatefulSet DaemonSet ReplicaSet Job CronJob
      │    ReplicationController: spec.template (CronJob: spec.jobTemplate.spec.template)
      │    Pod: itself; Namespace: its annotation; any other kind: unchanged, no line
      │    default: turnout.dev/inject: enabled on the pod template (the webhook injects
      │    when the pods are created); manual: the sidecar itself (`sidecar.inject_pod`)
      v
render_outputs(...)  YAML in -> YAML out (``---`` between documents), JSON in -> JSON out
Report               Linkerd's lines: ‼ warnings, then `deployment "web" injected` ...
```

Skipped (left as written, with a warning): ``hostNetwork: true``, ``turnout.dev/inject:
disabled``, another mesh's sidecar, a namespace that is never injected (kube-system ...).
UDP ports are a warning only: the pod is injected, its UDP is not proxied. Already injected
objects come out unchanged, so inject twice = inject once, byte for byte.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from turnout.cluster import names
from turnout.cluster.inject.settings import DEFAULT_INJECT_SETTINGS, InjectSettings
from turnout.cluster.inject.sidecar import (
    Obj,
    containers,
    drop_annotations,
    inject_pod,
    is_injected,
    third_party_sidecar,
    uninject_pod,
    workload_of,
)
from turnout.engine.errors import LoadError
from turnout.engine.model.limits import (
    DEFAULT_LIMITS,
    BadYAML,
    ManifestLimits,
    load_yaml,
    read_manifest,
)

TEMPLATE_KINDS = frozenset(
    {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job"}
)
WARNING = "‼"


@dataclass(slots=True)
class Report:
    """What `mesh inject` says on stderr: warnings first, then one line per object."""

    warnings: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def text(self) -> str:
        if not self.lines:
            self.warnings.append(f"{WARNING} no supported objects found")
        body = [*self.warnings, *self.lines]
        return "\n" + "".join(f"{line}\n" for line in body) + "\n"


@dataclass(frozen=True, slots=True)
class InputFile:
    name: str
    json: bool
    """The text was JSON: the output is JSON too."""
    documents: tuple[object, ...]
    """Each document's data (None for an empty one)."""


def read_inputs(
    files: Iterable[str], *, limits: ManifestLimits = DEFAULT_LIMITS
) -> list[InputFile]:
    out: list[InputFile] = []
    for file in files:
        text = read_manifest(file, limits=limits)
        docs: list[object] = []
        for index, doc in enumerate(load_yaml(text, file=file, limits=limits)):
            if isinstance(doc, BadYAML):
                raise LoadError(doc.message, file=file, doc_index=index)
            if doc is not None and not isinstance(doc, dict):
                raise LoadError(
                    "a document must be a mapping (an object)", file=file, doc_index=index
                )
            docs.append(doc)
        out.append(InputFile(file, text.lstrip().startswith(("{", "[")), tuple(docs)))
    return out


def render_outputs(files: Iterable[InputFile]) -> str:
    parts: list[str] = []
    for f in files:
        for doc in f.documents:
            if doc is None:
                continue
            if f.json:
                parts.append(json.dumps(doc, indent=4, ensure_ascii=False) + "\n")
            else:
                parts.append(
                    yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1 << 20)
                )
    if all(f.json for f in files):
        return "".join(parts)
    return "---\n".join(parts)


# ---------------------------------------------------------------- one object


@dataclass(frozen=True, slots=True, kw_only=True)
class Mode:
    uninject: bool = False
    manual: bool = False
    settings: InjectSettings = DEFAULT_INJECT_SETTINGS


def transform(files: list[InputFile], mode: Mode) -> tuple[list[InputFile], Report]:
    """Every document of `files` injected (or uninjected), and what was done."""
    report = Report()
    out: list[InputFile] = []
    for f in files:
        docs: list[object] = []
        for index, doc in enumerate(f.documents):
            if doc is None:
                docs.append(None)
                continue
            assert isinstance(doc, dict)
            docs.append(_document(doc, mode, report, where=f"{f.name}[{index}]"))
        out.append(InputFile(f.name, f.json, tuple(docs)))
    return out, report


def _document(doc: Obj, mode: Mode, report: Report, *, where: str) -> Obj:
    kind = doc.get("kind")
    if not isinstance(kind, str) or not isinstance(doc.get("apiVersion"), str):
        raise LoadError("not a Kubernetes object: want apiVersion and kind", file=where)
    items = doc.get("items")
    if kind.endswith("List") and isinstance(items, list):
        out = copy.copy(doc)
        out["items"] = [
            _document(item, mode, report, where=f"{where} items[{i}]")
            if isinstance(item, dict)
            else item
            for i, item in enumerate(items)
        ]
        return out
    return _object(doc, mode, report)


def _meta(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = doc.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _template(doc: Obj) -> tuple[Obj | None, list[str]]:
    """The object's pod (template) and its path, or None for kinds without one."""
    kind = doc["kind"]
    if kind == "Pod":
        return doc, []
    path = ["spec", "template"]
    if kind == "CronJob":
        path = ["spec", "jobTemplate", "spec", "template"]
    elif kind not in TEMPLATE_KINDS:
        return None, []
    node: Any = doc
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return (node if isinstance(node, dict) else None), path


def _object(doc: Obj, mode: Mode, report: Report) -> Obj:
    kind, name = doc["kind"], str(_meta(doc).get("name") or _meta(doc).get("generateName") or "")
    label = f'{kind.lower()} "{name}"'
    if kind == "Namespace":
        return _namespace(doc, mode, report, label)
    pod, path = _template(doc)
    if pod is None:
        return doc
    if mode.uninject:
        new, changed = uninject_pod(pod)
        report.lines.append(f"{label} {'uninjected' if changed else 'skipped'}")
        return _put(doc, path, new)
    why = _skip_reasons(doc, pod, f"{kind.lower()}/{name}")
    report.warnings.extend(f"{WARNING} {w}" for w in why)
    if why:
        report.lines.append(f"{label} skipped")
        return doc
    spec = pod.get("spec") or {}
    if _uses_udp(spec):
        report.warnings.append(f'{WARNING} {kind.lower()}/{name} uses "protocol: UDP"')
    if mode.manual:
        workload = workload_of(pod) if kind == "Pod" else f"{kind.lower()}/{name}"
        new, warnings = inject_pod(pod, workload=workload, settings=mode.settings)
        report.warnings.extend(f"{WARNING} {w} in {kind.lower()}/{name}" for w in warnings)
    elif is_injected(spec):
        new = pod
    else:
        new = copy.deepcopy(pod)
        _annotations(new)[names.INJECT_ANNOTATION] = "enabled"
    report.lines.append(f"{label} injected")
    return _put(doc, path, new)


def _skip_reasons(doc: Obj, pod: Obj, ref: str) -> list[str]:
    """Why `doc` (``ref``: deployment/web) is not injected; [] = it is."""
    spec = pod.get("spec") or {}
    why = []
    namespace = _meta(doc).get("namespace")
    if namespace in names.NEVER_INJECTED_NAMESPACES:
        why.append(f'{ref} is in namespace "{namespace}", which is never injected')
    if spec.get("hostNetwork") is True:
        why.append(f'"hostNetwork: true" detected in {ref}')
    if (_meta(pod).get("annotations") or {}).get(names.INJECT_ANNOTATION) == "disabled":
        why.append(f'"{names.INJECT_ANNOTATION}: disabled" annotation set on {ref}')
    if (other := third_party_sidecar(spec)) is not None and not is_injected(spec):
        why.append(f'known 3rd party sidecar "{other}" detected in {ref}')
    return why


def _uses_udp(spec: Mapping[str, Any]) -> bool:
    return any(
        isinstance(p, dict) and p.get("protocol") == "UDP"
        for c in containers(spec)
        for p in c.get("ports") or ()
    )


def _namespace(doc: Obj, mode: Mode, report: Report, label: str) -> Obj:
    name = _meta(doc).get("name")
    if mode.uninject:
        new = copy.deepcopy(doc)
        meta = new.get("metadata")
        changed = isinstance(meta, dict) and drop_annotations(meta)
        report.lines.append(f"{label} {'annotation removed' if changed else 'skipped'}")
        return new
    if name in names.NEVER_INJECTED_NAMESPACES:
        report.warnings.append(f'{WARNING} namespace "{name}" is never injected')
        report.lines.append(f"{label} skipped")
        return doc
    if (_meta(doc).get("annotations") or {}).get(names.INJECT_ANNOTATION) == "disabled":
        report.warnings.append(
            f'{WARNING} "{names.INJECT_ANNOTATION}: disabled" annotation set on namespace/{name}'
        )
        report.lines.append(f"{label} skipped")
        return doc
    new = copy.deepcopy(doc)
    _annotations(new)[names.INJECT_ANNOTATION] = "enabled"
    report.lines.append(f"{label} annotated")
    return new


def _annotations(obj: Obj) -> dict[str, Any]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = obj["metadata"] = {}
    anns = meta.get("annotations")
    if not isinstance(anns, dict):
        anns = meta["annotations"] = {}
    return anns


def _put(doc: Obj, path: list[str], pod: Obj) -> Obj:
    """`doc` with the pod at `path` replaced (`path` [] = the document is the pod)."""
    if not path:
        return pod
    out = copy.deepcopy(doc)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = pod
    return out


def documents_of(files: Iterable[InputFile]) -> Iterator[Obj]:
    """Every object (List items one by one): what a test compares."""
    for f in files:
        for doc in f.documents:
            if isinstance(doc, dict):
                items = doc.get("items")
                if str(doc.get("kind", "")).endswith("List") and isinstance(items, list):
                    yield from (i for i in items if isinstance(i, dict))
                else:
                    yield doc
