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
        "turnout.adapters",
        ("turnout.engine.ir", "turnout.proxy", *THIRD_PARTY_IO),
        "adapters yield model objects only",
    ),
    ("turnout.proxy", ("turnout.engine", "kubernetes"), "the proxy works from xDS"),
    (
        "turnout.engine",
        ("turnout.proxy", "turnout.cli", "turnout.demo", "turnout.viz"),
        "the engine is below the proxy, the CLI and the demo",
    ),
    ("turnout.demo", ("turnout.cli",), "only the entry points import the CLI"),
    ("turnout.viz", ("turnout.engine", "turnout.proxy"), "viz reads expositions, nothing more"),
]

ONLY_IN: list[tuple[tuple[str, ...], tuple[str, ...], str]] = [
    (("kubernetes",), ("turnout.engine.sources",), "only sources use the kubernetes client"),
    (
        ("aiohttp",),
        ("turnout.proxy", "turnout.cli", "turnout.demo"),
        "only the proxy speaks HTTP",
    ),
    (
        PROTOBUF,
        ("turnout.engine.xds", "turnout.engine.server", "turnout.proxy"),
        "only xds, the server and the proxy's xDS client touch protobuf",
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
