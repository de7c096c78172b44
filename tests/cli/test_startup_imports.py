"""What a command's process loads before it does anything: `mesh proxy -f` must not load the
engine (pydantic, jsonschema, CEL; its compile runs in a child) nor grpc (only `--xds`
needs it), and `mesh tap` nothing heavy at all. Resident memory is a goal of the proxy
(`bench/proxy.py`); these imports are what broke it before."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = (
    "pydantic",
    "jsonschema",
    "celpy",
    "grpc",
    "kubernetes",
    "yaml",
    "jwt",
    "cryptography",
    "opentelemetry",
)
"""`jwt` and `cryptography`: a proxy loads them only for JWT rules or `--identity`;
`opentelemetry` only with `--trace-otlp` (docs/tracing.md)."""

PROBE = """
import json, sys
from turnout.cli.main import build_parser, runner_of
args = build_parser().parse_args(sys.argv[1:])
runner_of(args.run)
print(json.dumps(sorted(m.split(".")[0] for m in sys.modules)))
"""


def loaded(*argv: str) -> set[str]:
    got = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(json.loads(got.stdout))


@pytest.mark.parametrize(
    ("argv", "allowed"),
    [
        pytest.param(("proxy", "-f", "x.yaml"), (), id="proxy-f"),
        pytest.param(("proxy", "--xds", "127.0.0.1:1"), ("grpc",), id="proxy-xds"),
        pytest.param(("tap", "--admin", "127.0.0.1:1"), (), id="tap"),
        pytest.param(("authz", "deploy/web", "--admin", "127.0.0.1:1"), (), id="authz"),
    ],
)
def test_a_command_loads_only_what_it_needs(
    argv: tuple[str, ...], allowed: tuple[str, ...]
) -> None:
    heavy = loaded(*argv) & set(HEAVY)
    assert heavy <= set(allowed), f"mesh {' '.join(argv)} loads {sorted(heavy - set(allowed))}"


def test_the_parser_loads_no_proxy() -> None:
    """Every command builds the whole parser: its defaults must not import the proxy (its
    package pulls in the transport and httptools), or `mesh validate` pays for them too."""
    code = "import json, sys, turnout.cli.main; print(json.dumps(sorted(sys.modules)))"
    got = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    modules = set(json.loads(got.stdout))
    assert not {m for m in modules if m.startswith("turnout.proxy") or m == "httptools"}


def test_the_probe_sees_heavy_imports() -> None:
    """The check above could pass by looking at nothing: `mesh validate` does load them."""
    assert {"pydantic", "jsonschema", "celpy"} <= loaded("validate", "-f", "x.yaml")
