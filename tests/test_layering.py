"""ARCHITECTURE.md's ownership table, enforced: walk every module's imports with `ast`.

Each rule names a package, the import prefixes it must not use, and why. A rule that is
broken fails with the module, the line and the forbidden import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "turnout"

THIRD_PARTY_IO = ("aiohttp", "grpc", "kubernetes")
PROTOBUF = ("envoy", "google.protobuf", "xds", "udpa")

RULES: list[tuple[str, tuple[str, ...], str]] = [
    (
        "turnout.wire",
        ("turnout.engine", "turnout.proxy", "turnout.cli", *THIRD_PARTY_IO),
        "shared wire formats are message definitions only",
    ),
    (
        "turnout.engine.ir",
        ("turnout", "pydantic", "yaml", *THIRD_PARTY_IO, *PROTOBUF),
        "the IR is stdlib-only frozen data",
    ),
    ("turnout.engine.model", (*THIRD_PARTY_IO, *PROTOBUF), "the model knows no transport"),
    ("turnout.engine.validate", (*THIRD_PARTY_IO, *PROTOBUF), "validation knows no transport"),
    (
        "turnout.engine.compile",
        (*THIRD_PARTY_IO, *PROTOBUF, "random", "time", "os", "pathlib", "socket", "asyncio"),
        "the compiler is pure: no I/O, clock or randomness",
    ),
    ("turnout.engine.xds", ("aiohttp", "kubernetes"), "xDS translation is transport-free"),
    ("turnout.engine.server", ("kubernetes",), "the ADS server knows no Kubernetes"),
    (
        "turnout.engine.identity",
        (*THIRD_PARTY_IO, *PROTOBUF, "turnout.engine.server", "turnout.engine.sources"),
        "the CA is crypto only: gRPC is engine.server's, TokenReview engine.sources'",
    ),
    (
        "turnout.engine.ir_policy",
        ("pydantic", "yaml", "turnout.engine.model", *THIRD_PARTY_IO, *PROTOBUF),
        "the policy IR is stdlib-only frozen data (plus engine.ir's SourceRef)",
    ),
    (
        "turnout.adapters.smi",
        ("turnout.engine.ir", "turnout.proxy", *THIRD_PARTY_IO),
        "the SMI adapter yields model objects only",
    ),
    (
        "turnout.adapters",
        ("turnout.proxy", *THIRD_PARTY_IO),
        "adapters are pure: model objects in, model objects (SMI) or the policy IR out",
    ),
    ("turnout.proxy", ("turnout.engine", "kubernetes"), "the proxy works from xDS"),
    (
        "turnout.engine",
        ("turnout.proxy", "turnout.cli", "turnout.demo", "turnout.viz"),
        "the engine is below the proxy, the CLI and the demo",
    ),
    ("turnout.demo", ("turnout.cli",), "only the entry points import the CLI"),
    (
        "turnout.grpcmesh",
        ("turnout.engine", "turnout.cli", "turnout.demo", "turnout.viz", "aiohttp"),
        "interceptors ride inside an app's grpc: they count into the proxy's metrics and tap"
        " hub (turnout.proxy), nothing else",
    ),
    ("turnout.viz", ("turnout.engine", "turnout.proxy"), "viz reads expositions, nothing more"),
    (
        "turnout.cluster.names",
        ("turnout.engine", "turnout.proxy", *THIRD_PARTY_IO),
        "the cluster's names are stdlib only (mesh proxy-init imports them in an init container)",
    ),
    (
        "turnout.cluster.capture",
        ("turnout.engine", "turnout.proxy", *THIRD_PARTY_IO),
        "mesh proxy-init runs in an init container: iptables and the names, nothing more",
    ),
    ("turnout.cluster", ("turnout.cli", "turnout.demo"), "only the entry points import the CLI"),
    (
        "turnout.dashboard",
        ("turnout.proxy", "turnout.engine.server", "turnout.engine.sources", "kubernetes", "grpc"),
        "the dashboard reads the control plane's admin port and the proxies' /metrics over"
        " HTTP, like the mesh commands it shows, through the CLI's own functions",
    ),
]

ONLY_IN: list[tuple[tuple[str, ...], tuple[str, ...], str]] = [
    (
        ("kubernetes",),
        ("turnout.engine.sources", "turnout.cluster.install", "turnout.cluster.check"),
        "only sources use the kubernetes client (and the cluster commands: install validates"
        " against its models, check asks the API server)",
    ),
    (
        ("aiohttp",),
        (
            "turnout.proxy",
            "turnout.cli",
            "turnout.demo",
            "turnout.engine.server.admin",
            "turnout.engine.server.prometheus",
            "turnout.engine.server.tap_fanin",
            "turnout.cluster.inject",
            "turnout.cluster.check",
            "turnout.dashboard",
        ),
        "only the proxy speaks HTTP (and the control plane's admin port: /metrics, /ready and "
        "the served table, what `mesh routes` reads; the readiness probe of the Prometheus it"
        " starts; the tap fan-in, which reads the proxies' admin /tap; the injector webhook; mesh"
        " check's probes; the dashboard's web server)",
    ),
    (
        PROTOBUF,
        ("turnout.engine.xds", "turnout.engine.server", "turnout.proxy", "turnout.wire"),
        "only xds, the server and the proxy's xDS client touch protobuf",
    ),
    (
        ("h2", "hpack", "hyperframe"),
        (
            "turnout.proxy.transport.h2_server",
            "turnout.proxy.transport.h2_stream",
            "turnout.proxy.transport.h2_client",
            "turnout.proxy.transport.h2_upstream",
            "turnout.proxy.transport.h2_codec",
        ),
        "only the HTTP/2 transport speaks HTTP/2 frames: the server side (h2_server, its"
        " streams in h2_stream) and the upstream side (h2_client, its"
        " connections in h2_upstream), both on h2_codec's connection; everything above sees"
        " IncomingRequest/ResponseWriter as for HTTP/1 (docs/http2.md)",
    ),
    (
        ("opentelemetry",),
        ("turnout.proxy.tracing",),
        "only --trace-otlp's tracer uses the OpenTelemetry SDK (resource, sampler bound), and"
        " never opentelemetry.proto: xds-protos ships an older copy (docs/tracing.md)",
    ),
]


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


MODULES = sorted(PKG.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_module_respects_the_ownership_table(path: Path) -> None:
    mod = module_name(path)
    problems: list[str] = []
    for lineno, imported in imports_of(path):
        for owner, forbidden, why in RULES:
            if under(mod, owner) and any(under(imported, f) for f in forbidden):
                if owner == "turnout.engine.ir" and imported == "turnout.engine.ir":
                    continue
                problems.append(f"{mod}:{lineno} imports {imported}: {why}")
        for prefixes, allowed, why in ONLY_IN:
            if any(under(imported, p) for p in prefixes) and not any(
                under(mod, a) for a in allowed
            ):
                problems.append(f"{mod}:{lineno} imports {imported}: {why}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_only_the_cli_prints(path: Path) -> None:
    mod = module_name(path)
    if under(mod, "turnout.cli"):
        return
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = [
        n.lineno
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print"
    ]
    assert not calls, f"{mod} calls print() on lines {calls}; only turnout.cli prints"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_nothing_but_the_entry_points_imports_the_cli(path: Path) -> None:
    mod = module_name(path)
    if under(mod, "turnout.cli") or mod == "turnout.__main__":
        return
    if under(mod, "turnout.dashboard"):
        return  # the CLI's other front end: each view calls its command's function
    bad = [f"{mod}:{n} imports {i}" for n, i in imports_of(path) if under(i, "turnout.cli")]
    assert not bad, "\n".join(bad)


def test_every_module_starts_with_future_annotations() -> None:
    missing = [
        module_name(p)
        for p in MODULES
        if p.read_text(encoding="utf-8").strip()
        and "from __future__ import annotations" not in p.read_text(encoding="utf-8")
    ]
    assert not missing, f"missing 'from __future__ import annotations': {missing}"


def is_type_checking(test: ast.expr) -> bool:
    """`TYPE_CHECKING` or `typing.TYPE_CHECKING`, as an `if` test."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def turnout_imports(path: Path, known: set[str], *, everything: bool = False) -> set[str]:
    """The turnout modules `path` imports when it is imported: statements run at import time
    (not inside functions), `if TYPE_CHECKING:` blocks left out; with `everything`, those
    too. `from P import n` counts as importing `P.n` when that is a module, else `P`."""
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    found: set[str] = set()

    def visit(stmts: list[ast.stmt]) -> None:
        for node in stmts:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not everything:
                continue
            if isinstance(node, ast.If) and is_type_checking(node.test) and not everything:
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in known)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.rsplit(".", node.level - 1)[0]
                    base = f"{parent}.{base}" if base else parent
                for alias in node.names:
                    if f"{base}.{alias.name}" in known:
                        found.add(f"{base}.{alias.name}")
                    elif base in known:
                        found.add(base)
            for field in ("body", "orelse", "finalbody"):
                visit([n for n in getattr(node, field, []) if isinstance(n, ast.stmt)])
            for handler in getattr(node, "handlers", []):
                visit(handler.body)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body)
    found.discard(mod)
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def connect(mod: str) -> None:
        index[mod] = low[mod] = len(index)
        stack.append(mod)
        for dep in sorted(graph[mod]):
            if dep not in index:
                connect(dep)
                low[mod] = min(low[mod], low[dep])
            elif dep in stack:
                low[mod] = min(low[mod], index[dep])
        if low[mod] == index[mod]:
            component = stack[stack.index(mod) :]
            del stack[stack.index(mod) :]
            if len(component) > 1:
                cycles.append(sorted(component))

    for mod in sorted(graph):
        if mod not in index:
            connect(mod)
    return sorted(cycles)


def describe_cycles(cycles: list[list[str]], graph: dict[str, set[str]]) -> str:
    return "\n".join(
        " <-> ".join(c)
        + "\n  "
        + "\n  ".join(f"{m} imports {sorted(graph[m] & set(c))}" for m in c)
        for c in cycles
    )


def test_module_level_imports_have_no_cycles() -> None:
    """What runs at import time forms a DAG: a cycle there makes import order matter and
    hides which module is the lower layer. `if TYPE_CHECKING:` imports are left out."""
    names = {module_name(p): p for p in MODULES}
    graph = {mod: turnout_imports(p, set(names)) for mod, p in names.items()}
    cycles = import_cycles(graph)
    assert not cycles, "import cycles:\n" + describe_cycles(cycles, graph)


def test_the_transport_has_no_import_cycles_even_for_type_checking() -> None:
    """Inside `proxy/transport/` even type-only and function-level imports form a DAG
    (issue 10: `client` and `messages` imported each other under TYPE_CHECKING): each module
    there has a place in one order, streams and messages at the bottom, the pool and the
    listener on top."""
    names = {module_name(p): p for p in MODULES}
    transport = {m: p for m, p in names.items() if under(m, "turnout.proxy.transport")}
    graph = {m: turnout_imports(p, set(transport), everything=True) for m, p in transport.items()}
    cycles = import_cycles(graph)
    assert not cycles, "import cycles:\n" + describe_cycles(cycles, graph)
