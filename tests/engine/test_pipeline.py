"""The incremental compiler of a watched directory gives what a full compile gives, and
re-reads only the files that changed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

import turnout.engine.pipeline as pipeline
from tests.conftest import ROOT
from turnout.engine import ir
from turnout.engine.pipeline import IncrementalCompiler, compile_files

EXAMPLES = ROOT / "examples" / "emojivoto"


def test_incremental_equals_a_full_compile(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "m")
    full = compile_files([tmp_path / "m"])
    inc = IncrementalCompiler()([tmp_path / "m"])
    assert inc.result == full.result
    assert inc.diagnostics == full.diagnostics


def test_only_changed_files_are_validated_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "m")
    seen: list[str] = []
    real = pipeline.validate_pieces

    def spy(text, **kw):  # type: ignore[no-untyped-def]
        seen.append(kw["file"])
        return real(text, **kw)

    monkeypatch.setattr(pipeline, "validate_pieces", spy)
    compiler = IncrementalCompiler()
    compiler([tmp_path / "m"])
    assert len(seen) == len(list((tmp_path / "m").rglob("*.yaml")))
    route = tmp_path / "m" / "mesh" / "30-web-route.yaml"
    route.write_text(route.read_text().replace("weight: 90", "weight: 50"))
    os.utime(route, ns=(1, 2))
    seen.clear()
    again = compiler([tmp_path / "m"])
    assert seen == [str(route)]
    assert again.result == compile_files([tmp_path / "m"]).result
    web = again.result.table.parent("service/emojivoto/web:80")
    assert isinstance(web, ir.ServiceParent)
    assert 50 in {b.weight for r in web.producer.rules for b in r.backends}
    seen.clear()
    os.utime(route, ns=(1, 2))  # same mtime, same size, new content: still seen
    route.write_text(route.read_text().replace("weight: 50", "weight: 60"))
    os.utime(route, ns=(1, 2))
    compiler([tmp_path / "m"])
    assert seen == [str(route)]


def test_a_watched_directory_keeps_no_raw_yaml(tmp_path: Path) -> None:
    """The directory source's compiler keeps typed objects only: the parsed YAML dicts
    (10,000 routes: 45 MB) go once the objects are validated."""
    shutil.copytree(EXAMPLES, tmp_path / "m")
    compiler = IncrementalCompiler()
    compiled = compiler([tmp_path / "m"])
    assert compiled.inputs.documents == ()
    objects = compiled.inputs.resources.objects
    assert objects and all(not o.raw for o in objects)
    again = compiler([tmp_path / "m"])  # from the cache: still equal to a full compile
    assert again.result == compile_files([tmp_path / "m"]).result


def test_json_and_edited_yaml_files_compile_as_a_full_compile_does(tmp_path: Path) -> None:
    """JSON is read whole, YAML a document at a time: both give what `compile_files` gives,
    before and after an edit of one document of a file of several."""
    shutil.copytree(EXAMPLES, tmp_path / "m")
    mesh = tmp_path / "m" / "mesh"
    route = yaml.safe_load((mesh / "30-web-route.yaml").read_text())

    def named(name: str, weight: int) -> dict[str, Any]:
        copy = json.loads(json.dumps(route))
        copy["metadata"]["name"] = name
        copy["spec"]["rules"][0]["backendRefs"][0]["weight"] = weight
        return copy

    (mesh / "31-web-route.json").write_text(json.dumps(named("web-json", 80)))
    compiler = IncrementalCompiler()
    for weight in (90, 70, 60):
        docs = [named("web-a", 50), named("web-b", weight), named("web-c", 40)]
        (mesh / "32-more.yaml").write_text(yaml.safe_dump_all(docs))
        got, want = compiler([tmp_path / "m"]), compile_files([tmp_path / "m"])
        assert (got.result, got.diagnostics) == (want.result, want.diagnostics), weight
