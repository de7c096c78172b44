"""The repository's Dockerfile, checked without a docker daemon: every instruction parses,
every COPY source exists in the build context (and `.dockerignore` keeps it), and the image
is the one the manifests name, running `mesh` as `names.PROXY_UID`."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from pathlib import Path

import pytest

import turnout
from turnout.cluster import names
from turnout.cluster.install.controller import deployment
from turnout.cluster.install.values import Values

ROOT = Path(__file__).resolve().parents[2]
KEYWORDS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


def instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of each instruction, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, args = (pending + line).strip().partition(" ")
        out.append((keyword, args.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation"
    return out


def ignored(path: str) -> bool:
    patterns = [
        p.strip()
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch.fnmatch(pre, pat) or fnmatch.fnmatch(pre, pat.removeprefix("**/"))
        for pat in patterns
        for pre in prefixes
    )


def test_every_instruction_is_a_dockerfile_keyword() -> None:
    found = instructions()
    assert found and all(k in KEYWORDS for k, _ in found), found
    froms = [a for k, a in found if k == "FROM"]
    assert all(a.split()[0] == "python:3.11-slim" for a in froms)


def test_every_copy_source_is_in_the_build_context() -> None:
    stages = {a.split()[-1] for k, a in instructions() if k == "FROM" and " AS " in a}
    copies = [a.split() for k, a in instructions() if k == "COPY"]
    assert copies
    for args in copies:
        flags = [a for a in args if a.startswith("--")]
        sources = [a for a in args if not a.startswith("--")][:-1]
        if any(f.startswith("--from=") for f in flags):
            assert {f.removeprefix("--from=") for f in flags} <= stages
            continue
        for src in sources:
            assert (ROOT / src).exists(), src
            assert not ignored(src), f"{src} is excluded by .dockerignore"
    for needed in ("turnout/engine/crds", "turnout/demo/examples"):
        target = (ROOT / needed).resolve().relative_to(ROOT)
        assert any(str(target) in args for args in map(" ".join, copies)), needed


def test_the_image_is_the_one_the_manifests_name() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert f"docker build -t {names.IMAGE} ." in text
    labels = " ".join(a for k, a in instructions() if k == "LABEL")
    assert f'org.opencontainers.image.version="{turnout.__version__}"' in labels
    pod = deployment(Values())["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == names.IMAGE


def test_mesh_is_the_entrypoint_and_runs_as_the_proxy_uid() -> None:
    found = dict(instructions())
    assert json.loads(found["ENTRYPOINT"]) == ["mesh"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "mesh" in scripts
    assert found["USER"] == f"{names.PROXY_UID}:{names.PROXY_UID}"
    runs = " ".join(a for k, a in instructions() if k == "RUN")
    assert f"useradd --uid {names.PROXY_UID}" in runs
    assert re.search(r"apt-get install .*\biptables\b", runs), "mesh proxy-init needs iptables"
    assert "PYTHONDONTWRITEBYTECODE=1" in " ".join(a for k, a in instructions() if k == "ENV")


@pytest.mark.parametrize("path", [".git", ".venv/bin/python", "tests/x.py", "a/__pycache__/m.pyc"])
def test_dockerignore_keeps_the_clone_out_of_the_context(path: str) -> None:
    assert ignored(path)
