"""`mesh install --grafana` / `--grafana-json DIR`: the dashboards as ConfigMaps Grafana's
sidecar discovers (validated against the kubernetes models like every install object), in the
namespace asked for, named by `mesh uninstall`; and as plain files for a standalone Grafana."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import yaml

from turnout.cli.main import main
from turnout.viz.grafana import DASHBOARDS, dashboard_text

Obj = dict[str, Any]


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def configmaps(*argv: str) -> list[Obj]:
    code, out, err = run(*argv)
    assert code == 0, err
    docs = [d for d in yaml.safe_load_all(out) if d is not None]
    return [d for d in docs if d["kind"] == "ConfigMap"]


def test_no_dashboards_unless_asked() -> None:
    assert configmaps("install") == []
    assert configmaps("install", "--set", "grafana.dashboards=false") == []


def test_install_grafana_renders_one_sidecar_configmap_per_dashboard() -> None:
    cms = configmaps("install", "--grafana")
    assert [c["metadata"]["name"] for c in cms] == [f"turnout-grafana-{n}" for n in DASHBOARDS]
    for cm, name in zip(cms, DASHBOARDS, strict=True):
        meta = cm["metadata"]
        assert meta["namespace"] == "turnout"
        assert meta["labels"]["grafana_dashboard"] == "1"
        assert meta["labels"]["app.kubernetes.io/part-of"] == "turnout"
        assert meta["annotations"] == {"grafana_folder": "Turnout"}
        assert cm["data"] == {f"turnout-{name}.json": dashboard_text(name)}
        assert json.loads(cm["data"][f"turnout-{name}.json"])["uid"] == f"turnout-{name}"
        assert len(yaml.safe_dump(cm)) < 256 * 1024  # kubectl apply's annotation limit
    assert cms == configmaps("install", "--set", "grafana.dashboards=true")


def test_the_configmaps_go_to_grafanas_namespace_and_uninstall_names_them() -> None:
    cms = configmaps("install", "--grafana", "--set", "grafana.namespace=monitoring")
    assert {c["metadata"]["namespace"] for c in cms} == {"monitoring"}
    code, out, err = run("uninstall", "--grafana", "--set", "grafana.namespace=monitoring")
    assert code == 0, err
    refs = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "ConfigMap"]
    assert sorted(r["metadata"]["name"] for r in refs) == sorted(c["metadata"]["name"] for c in cms)
    assert {r["metadata"]["namespace"] for r in refs} == {"monitoring"}


def test_a_bad_grafana_namespace_is_one_line() -> None:
    code, out, err = run("install", "--set", "grafana.namespace=Monitoring")
    assert (code, out) == (2, "")
    assert err == (
        "error: --set grafana.namespace=Monitoring: 'Monitoring' is not a namespace name"
        " (RFC 1123 label)\n"
    )


def test_grafana_json_writes_the_dashboards_for_a_standalone_grafana(tmp_path: Path) -> None:
    out_dir = tmp_path / "dashboards"
    code, out, err = run("install", "--grafana-json", str(out_dir))
    assert (code, out) == (0, "")
    files = sorted(p.name for p in out_dir.iterdir())
    assert files == sorted(f"turnout-{n}.json" for n in DASHBOARDS)
    for name in DASHBOARDS:
        assert (out_dir / f"turnout-{name}.json").read_text() == dashboard_text(name)
        assert f"note: wrote {out_dir}/turnout-{name}.json\n" in err
    code, out, err = run("install", "--grafana-json", str(tmp_path), "--crds")
    assert (code, out, err) == (
        2,
        "",
        "error: --grafana-json writes the dashboards only, not with --crds\n",
    )
    (tmp_path / "file").write_text("")
    code, out, err = run("install", "--grafana-json", str(tmp_path / "file" / "sub"))
    assert (code, out) == (2, "") and err.startswith(f"error: {tmp_path}/file/sub: "), err
    assert "\n" not in err.rstrip("\n")
