"""Per-compile state: the index, collected diagnostics, and the clusters referenced so far."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from turnout.engine.compile.index import Index
from turnout.engine.diagnostics import Diagnostic

if TYPE_CHECKING:
    from turnout.engine.compile.backends import ReadyCheck


@dataclass(slots=True)
class ClusterUse:
    namespace: str
    service: str
    port: int
    grpc: bool = False
    """Referenced by a GRPCRoute: the upstream speaks HTTP/2."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CompileOptions:
    """What the compiler may assume about its inputs (still a pure function of them)."""

    complete_inputs: bool = False
    """True: the inputs are everything there is (the Kubernetes source: the whole cluster),
    so a parent Service that is not among them does not exist, and the route's entry for
    it is `Accepted=False` with reason `NoMatchingParent`, Linkerd's answer. False (a
    manifests directory, `mesh routes -f`): the Service may be applied elsewhere; the route
    attaches to the port its parentRef names, with a `ParentNotFound` warning."""


DEFAULT_COMPILE_OPTIONS = CompileOptions()


@dataclass(slots=True)
class Ctx:
    index: Index
    options: CompileOptions = DEFAULT_COMPILE_OPTIONS
    diags: list[Diagnostic] = field(default_factory=list)
    clusters: dict[str, ClusterUse] = field(default_factory=dict)
    ready: list[ReadyCheck] = field(default_factory=list)
    """Backends whose readiness `backends.report_not_ready` checks after the routes."""

    def report(self, diag: Diagnostic) -> None:
        self.diags.append(diag)

    def use_cluster(self, *, namespace: str, service: str, port: int, grpc: bool) -> str:
        name = cluster_name(namespace, service, port)
        use = self.clusters.get(name)
        if use is None:
            self.clusters[name] = ClusterUse(namespace, service, port, grpc)
        elif grpc:
            use.grpc = True
        return name


def cluster_name(namespace: str, service: str, port: int) -> str:
    return f"{namespace}/{service}:{port}"
