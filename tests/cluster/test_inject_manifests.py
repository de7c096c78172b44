"""`mesh inject` / `mesh uninject` over manifests: every kind, the report, idempotence, the
round trip, the sidecar's exact command lines, and the one-line errors."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from turnout.cli.main import main
from turnout.cluster import names
from turnout.cluster.inject.sidecar import workload_of

Obj = dict[str, Any]


def pod_spec(*, account: str | None = None, **extra: Any) -> Obj:
    spec: Obj = {
        "containers": [{"name": "app", "image": "app:1", "ports": [{"containerPort": 8080}]}]
    }
    if account:
        spec["serviceAccountName"] = account
    return {**spec, **extra}


def template(labels: Obj | None = None, annotations: Obj | None = None, **spec: Any) -> Obj:
    meta: Obj = {"labels": labels or {"app": "web"}}
    if annotations:
        meta["annotations"] = annotations
    return {"metadata": meta, "spec": pod_spec(**spec)}


def mk_workload(kind: str, name: str = "web", ns: str = "shop", **tpl: Any) -> Obj:
    api = {"Job": "batch/v1", "CronJob": "batch/v1"}.get(kind, "apps/v1")
    meta = {"name": name, "namespace": ns}
    if kind == "Pod":
        t = template(**tpl)
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {**meta, **t["metadata"]},
            "spec": t["spec"],
        }
    spec: Obj = {"template": template(**tpl)}
    if kind == "CronJob":
        spec = {"schedule": "* * * * *", "jobTemplate": {"spec": spec}}
    elif kind != "Job":
        spec = {"selector": {"matchLabels": {"app": "web"}}, **spec}
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec}


def mk_namespace(name: str, annotations: Obj | None = None) -> Obj:
    meta: Obj = {"name": name}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def write(tmp_path: Path, *docs: Obj, name: str = "in.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def pod_of(doc: Obj) -> Obj:
    if doc["kind"] == "Pod":
        return doc
    spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
    pod: Obj = spec["template"]
    return pod


KINDS = ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"]


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_gets_the_annotation_on_its_pod_template(kind: str, tmp_path: Path) -> None:
    code, out, err = run("inject", str(write(tmp_path, mk_workload(kind))))
    assert code == 0
    (doc,) = yaml.safe_load_all(out)
    assert pod_of(doc)["metadata"]["annotations"] == {names.INJECT_ANNOTATION: "enabled"}
    assert [c["name"] for c in pod_of(doc)["spec"]["containers"]] == ["app"]
    assert err == f'\n{kind.lower()} "web" injected\n\n'


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_gets_the_sidecar_with_manual(kind: str, tmp_path: Path) -> None:
    code, out, err = run("inject", "--manual", str(write(tmp_path, mk_workload(kind))))
    assert code == 0, err
    pod = pod_of(next(yaml.safe_load_all(out)))
    assert [c["name"] for c in pod["spec"]["containers"]] == [names.PROXY_CONTAINER, "app"]
    assert [c["name"] for c in pod["spec"]["initContainers"]] == [names.INIT_CONTAINER]
    args = pod["spec"]["containers"][0]["args"]
    want = {"Pod": "pod/web"}.get(kind, f"{kind.lower()}/web")
    assert args[args.index("--workload") + 1] == want


def test_the_sidecar_is_the_agreed_command_line(tmp_path: Path) -> None:
    annotations = {
        names.OPAQUE_PORTS: "3306, 4000-4100",
        names.SKIP_INBOUND_PORTS: "9000",
        names.SKIP_OUTBOUND_PORTS: "5432,6379",
        names.PROXY_CPU_REQUEST: "250m",
        names.PROXY_MEMORY_LIMIT: "256Mi",
    }
    labels = {"app": "web", "version": "v2", "pod-template-hash": "abc"}
    doc = mk_workload("Deployment", labels=labels, annotations=annotations, account="web-sa")
    code, out, _ = run("inject", "--manual", str(write(tmp_path, doc)))
    assert code == 0
    pod = pod_of(next(yaml.safe_load_all(out)))
    proxy, init = pod["spec"]["containers"][0], pod["spec"]["initContainers"][0]
    assert proxy["command"] == ["mesh"] and init["command"] == ["mesh"]
    assert proxy["args"] == [
        "proxy",
        "--xds", "turnout-xds.turnout.svc.cluster.local:8086",
        "-n", "$(POD_NAMESPACE)",
        "--workload", "deployment/web",
        "--pod", "$(POD_NAME)",
        "--outbound", "127.0.0.1:4140",
        "--inbound", "0.0.0.0:4143",
        "--admin", "0.0.0.0:4191",
        "--transparent",
        "--identity", "web-sa.$(POD_NAMESPACE).serviceaccount.identity.cluster.local",
        "--identity-token-file", "/var/run/secrets/turnout/identity/token",
        "--identity-addr", "turnout-identity.turnout.svc.cluster.local:8086",
        "--label", "app=web",
        "--label", "version=v2",
        "--opaque-ports", "3306,4000-4100",
    ]  # fmt: skip
    assert init["args"] == [
        "proxy-init",
        "--inbound-port", "4143",
        "--outbound-port", "4140",
        "--proxy-uid", "2102",
        "--skip-inbound-ports", "4191,9000",
        "--skip-outbound-ports", "5432,6379",
    ]  # fmt: skip
    assert init["securityContext"]["capabilities"] == {"add": ["NET_ADMIN", "NET_RAW"]}
    assert init["securityContext"]["runAsUser"] == 0
    assert init["securityContext"]["runAsNonRoot"] is False
    assert proxy["securityContext"]["runAsUser"] == names.PROXY_UID
    assert proxy["resources"] == {
        "requests": {"cpu": "250m", "memory": "64Mi"},
        "limits": {"memory": "256Mi"},
    }
    assert {p["name"]: p["containerPort"] for p in proxy["ports"]} == {
        "turnout-proxy": 4143,
        "turnout-admin": 4191,
    }
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 4191}
    assert proxy["livenessProbe"]["httpGet"] == {"path": "/live", "port": 4191}
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in proxy["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    (token,) = [v for v in pod["spec"]["volumes"] if "projected" in v]
    source = token["projected"]["sources"][0]["serviceAccountToken"]
    assert source["audience"] == "identity.turnout.dev" and source["path"] == "token"
    (mount,) = proxy["volumeMounts"]
    assert f"{mount['mountPath']}/{source['path']}" == names.IDENTITY_TOKEN_PATH
    assert pod["metadata"]["annotations"][names.INJECTED_ANNOTATION]


def test_a_native_sidecar_is_an_init_container_that_holds_the_app_back(tmp_path: Path) -> None:
    doc = mk_workload(
        "Job",
        annotations={names.PROXY_NATIVE_SIDECAR: "true"},
        initContainers=[{"name": "migrate"}],
    )
    src = write(tmp_path, doc)
    code, out, _ = run("inject", "--manual", str(src))
    assert code == 0
    pod = pod_of(next(yaml.safe_load_all(out)))
    assert [c["name"] for c in pod["spec"]["containers"]] == ["app"]
    inits = pod["spec"]["initContainers"]
    assert [c["name"] for c in inits] == ["migrate", names.INIT_CONTAINER, names.PROXY_CONTAINER]
    assert inits[2]["restartPolicy"] == "Always"
    assert inits[2]["startupProbe"]["httpGet"] == {"path": "/ready", "port": 4191}
    assert "kubectl.kubernetes.io/default-container" not in pod["metadata"]["annotations"]
    (tmp_path / "once.yaml").write_text(out)
    assert run("inject", "--manual", str(tmp_path / "once.yaml"))[1] == out
    _, back, _ = run("uninject", str(tmp_path / "once.yaml"))
    assert next(yaml.safe_load_all(back)) == doc


def test_the_default_container_is_the_app_and_a_users_choice_stays(tmp_path: Path) -> None:
    doc = mk_workload("Deployment")
    pod = pod_of(next(yaml.safe_load_all(run("inject", "--manual", str(write(tmp_path, doc)))[1])))
    assert pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] == "app"
    chosen = {"kubectl.kubernetes.io/default-container": "sidecar"}
    doc = mk_workload("Deployment", annotations=chosen)
    pod = pod_of(next(yaml.safe_load_all(run("inject", "--manual", str(write(tmp_path, doc)))[1])))
    assert pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] == "sidecar"


def test_bad_config_annotations_are_warned_about_and_the_defaults_stay(tmp_path: Path) -> None:
    annotations = {names.PROXY_CPU_REQUEST: "lots", names.OPAQUE_PORTS: "70000"}
    doc = mk_workload("Deployment", annotations=annotations)
    code, out, err = run("inject", "--manual", str(write(tmp_path, doc)))
    assert code == 0
    proxy = pod_of(next(yaml.safe_load_all(out)))["spec"]["containers"][0]
    assert proxy["resources"]["requests"]["cpu"] == "100m"
    assert "--opaque-ports" not in proxy["args"]
    assert f"‼ {names.PROXY_CPU_REQUEST}: want a quantity, got 'lots' (ignored)" in err
    assert f"{names.OPAQUE_PORTS}: want ports and ranges" in err


@pytest.mark.parametrize("manual", [False, True], ids=["annotation", "manual"])
@pytest.mark.parametrize("suffix", ["yaml", "json"])
def test_inject_twice_is_inject_once_byte_for_byte(
    manual: bool, suffix: str, tmp_path: Path
) -> None:
    docs = [mk_namespace("shop"), *(mk_workload(k, name=k.lower()) for k in KINDS)]
    if suffix == "json":
        src = tmp_path / "in.json"
        src.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    else:
        src = write(tmp_path, *docs)
    flags = ["--manual"] if manual else []
    _, once, _ = run("inject", *flags, str(src))
    again = tmp_path / f"once.{suffix}"
    again.write_text(once)
    _, twice, _ = run("inject", *flags, str(again))
    assert twice == once
    if suffix == "json":
        assert json.loads(once)["kind"] == "List"


@pytest.mark.parametrize("manual", [False, True], ids=["annotation", "manual"])
def test_uninject_takes_out_what_inject_added(manual: bool, tmp_path: Path) -> None:
    docs = [mk_namespace("shop"), *(mk_workload(k, name=k.lower()) for k in KINDS)]
    docs.append(mk_workload("Deployment", name="noted", annotations={"team": "a"}))
    src = write(tmp_path, *docs)
    _, injected, _ = run("inject", *(["--manual"] if manual else []), str(src))
    (tmp_path / "injected.yaml").write_text(injected)
    code, out, err = run("uninject", str(tmp_path / "injected.yaml"))
    assert code == 0
    assert list(yaml.safe_load_all(out)) == docs
    assert 'deployment "deployment" uninjected' in err
    assert 'namespace "shop" annotation removed' in err


def test_a_namespace_is_annotated_and_kube_system_never(tmp_path: Path) -> None:
    src = write(tmp_path, mk_namespace("shop"), mk_namespace("kube-system"))
    code, out, err = run("inject", str(src))
    assert code == 0
    shop, system = yaml.safe_load_all(out)
    assert shop["metadata"]["annotations"] == {names.INJECT_ANNOTATION: "enabled"}
    assert system == mk_namespace("kube-system")
    assert 'namespace "shop" annotated' in err and 'namespace "kube-system" skipped' in err


@pytest.mark.parametrize(
    ("doc", "warning"),
    [
        pytest.param(
            mk_workload("Deployment", hostNetwork=True),
            '‼ "hostNetwork: true" detected in deployment/web',
            id="host-network",
        ),
        pytest.param(
            mk_workload("Deployment", annotations={names.INJECT_ANNOTATION: "disabled"}),
            '‼ "turnout.dev/inject: disabled" annotation set on deployment/web',
            id="disabled",
        ),
        pytest.param(
            mk_workload("Deployment", ns="kube-system"),
            '‼ deployment/web is in namespace "kube-system", which is never injected',
            id="kube-system",
        ),
        pytest.param(
            mk_workload("Deployment", initContainers=[{"name": "istio-proxy", "image": "x"}]),
            '‼ known 3rd party sidecar "istio-proxy" detected in deployment/web',
            id="other-mesh",
        ),
    ],
)
def test_what_is_never_injected_is_skipped_with_a_warning(
    doc: Obj, warning: str, tmp_path: Path
) -> None:
    for flags in ([], ["--manual"]):
        code, out, err = run("inject", *flags, str(write(tmp_path, doc)))
        assert code == 0
        assert next(yaml.safe_load_all(out)) == doc
        assert err.splitlines()[1:] == [warning, 'deployment "web" skipped', ""]


def test_udp_ports_are_a_warning_and_the_pod_is_injected(tmp_path: Path) -> None:
    doc = mk_workload("DaemonSet")
    doc["spec"]["template"]["spec"]["containers"][0]["ports"] = [
        {"containerPort": 53, "protocol": "UDP"}
    ]
    code, _, err = run("inject", str(write(tmp_path, doc)))
    assert code == 0
    assert '‼ daemonset/web uses "protocol: UDP"' in err and 'daemonset "web" injected' in err


def test_other_kinds_pass_through_and_none_supported_is_said(tmp_path: Path) -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}}
    code, out, err = run("inject", str(write(tmp_path, service)))
    assert code == 0
    assert next(yaml.safe_load_all(out)) == service
    assert err == "\n‼ no supported objects found\n\n"


def test_stdin_in_stdout_out_like_a_kubectl_pipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listed = {"apiVersion": "v1", "kind": "List", "items": [mk_workload("Deployment")]}
    monkeypatch.setattr(sys, "stdin", io.StringIO(yaml.safe_dump(listed)))
    code, out, err = run("inject", "-")
    assert code == 0
    (doc,) = yaml.safe_load_all(out)
    assert doc["kind"] == "List"
    assert doc["items"][0]["spec"]["template"]["metadata"]["annotations"] == {
        names.INJECT_ANNOTATION: "enabled"
    }
    assert 'deployment "web" injected' in err


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param(
            "kind: Service\n---\nmetadata: [\n",
            "error: in.yaml[1]: invalid YAML: did not find expected node content (line 4, column 1)",
            id="bad-yaml",
        ),
        pytest.param(
            "- a\n- b\n",
            "error: in.yaml[0]: a document must be a mapping (an object)",
            id="not-object",
        ),
        pytest.param(
            "apiVersion: v1\nkind: List\nitems:\n- {name: x}\n",
            "error: in.yaml[0] items[0]: not a Kubernetes object: want apiVersion and kind",
            id="list-item",
        ),
    ],
)
def test_bad_input_is_one_line_naming_the_file_and_document(
    text: str, line: str, tmp_path: Path
) -> None:
    (tmp_path / "in.yaml").write_text(text)
    code, out, err = run("inject", str(tmp_path / "in.yaml"))
    assert (code, out) == (2, "")
    assert err.replace(str(tmp_path) + "/", "") == line + "\n"


@pytest.mark.parametrize(
    ("meta", "want"),
    [
        pytest.param(
            {
                "generateName": "web-5d4f8c7b9-",
                "labels": {"pod-template-hash": "5d4f8c7b9"},
                "ownerReferences": [
                    {"kind": "ReplicaSet", "name": "web-5d4f8c7b9", "controller": True}
                ],
            },
            "deployment/web",
            id="replicaset-of-a-deployment",
        ),
        pytest.param(
            {"generateName": "web-5d4f8c7b9-", "labels": {"pod-template-hash": "5d4f8c7b9"}},
            "deployment/web",
            id="generate-name-only",
        ),
        pytest.param(
            {
                "name": "db-0",
                "ownerReferences": [{"kind": "StatefulSet", "name": "db", "controller": True}],
            },
            "statefulset/db",
            id="statefulset",
        ),
        pytest.param(
            {
                "generateName": "rs-",
                "ownerReferences": [{"kind": "ReplicaSet", "name": "rs", "controller": True}],
            },
            "replicaset/rs",
            id="bare-replicaset",
        ),
        pytest.param({"name": "debug"}, "pod/debug", id="bare-pod"),
    ],
)
def test_a_pods_workload_is_named_like_linkerd_does(meta: Obj, want: str) -> None:
    assert workload_of({"metadata": meta}) == want


def test_the_sidecars_command_lines_parse_as_mesh_commands(tmp_path: Path) -> None:
    """The injected args are what `mesh proxy` and `mesh proxy-init` accept. `--transparent`
    and `mesh proxy-init` come with the capture work: until the parser has them, the rest of
    the command line is still checked."""
    from turnout.cli.errors import UsageError
    from turnout.cli.main import build_parser

    annotations = {names.OPAQUE_PORTS: "3306", names.SKIP_OUTBOUND_PORTS: "5432"}
    doc = mk_workload("Deployment", annotations=annotations)
    _, out, _ = run("inject", "--manual", str(write(tmp_path, doc)))
    pod = pod_of(next(yaml.safe_load_all(out)))
    parser = build_parser()
    for container in (pod["spec"]["containers"][0], pod["spec"]["initContainers"][0]):
        # what the kubelet does with $(VAR) in args
        argv = [
            a.replace("$(POD_NAMESPACE)", "shop").replace("$(POD_NAME)", "web-1")
            for a in container["args"]
        ]
        try:
            parser.parse_args(argv)
        except UsageError as exc:
            if "invalid choice: 'proxy-init'" in str(exc):
                continue
            if "unrecognized arguments: --transparent;" not in str(exc):
                raise
            args = parser.parse_args([a for a in argv if a != "--transparent"])
            assert args.namespace == "shop" and args.workload == "deployment/web"
