"""`mesh install` / `mesh uninstall` end to end through `main`: the objects validate against
the kubernetes client's models, hold the agreed names, flags and ports, and uninstall names
every one of them."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from kubernetes.client import ApiClient

from turnout.cli.main import main
from turnout.cluster import names
from turnout.cluster.install import controller, schema
from turnout.cluster.install.errors import InvalidObject
from turnout.cluster.install.identity import FILES
from turnout.engine.identity.clock import utc_now
from turnout.engine.identity.settings import IdentitySettings
from turnout.engine.identity.store import init_store, load_material
from turnout.engine.sources.k8s.rbac import allowed, controller_rules

Obj = dict[str, Any]

SERVE = [
    "serve",
    "--kubernetes",
    "--xds",
    "0.0.0.0:8086",
    "--admin",
    "0.0.0.0:9990",
    "--identity-dir",
    "/var/run/turnout/identity",
    "--injector",
    "0.0.0.0:8443",
    "--injector-cert-dir",
    "/var/run/turnout/injector",
    "--leader-elect",
    "--dashboard",
    "0.0.0.0:50750",
]
"""The controller's command line, as COMMON.md agreed it (and the dashboard, viz.dashboard)."""


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def docs(*argv: str) -> list[Obj]:
    code, out, err = run(*argv)
    assert code == 0, err
    return [d for d in yaml.safe_load_all(out) if d is not None]


def by_kind(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in objs if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, (kind, name, [o["metadata"]["name"] for o in found])
    return found[0]


@pytest.fixture(scope="module")
def installed() -> list[Obj]:
    return docs("install")


@pytest.fixture(scope="module")
def ha() -> list[Obj]:
    return docs("install", "--ha")


def round_trip(obj: Obj) -> Obj:
    api: Any = ApiClient()
    model = schema.MODELS[(obj["apiVersion"], obj["kind"])]
    back: Obj = api.sanitize_for_serialization(api._ApiClient__deserialize(obj, model))
    return back


@pytest.mark.parametrize(
    "argv", [["install"], ["install", "--ha"], ["install", "--crds", "--ignore-cluster"]]
)
def test_every_printed_object_round_trips_through_its_kubernetes_model(argv: list[str]) -> None:
    objs = docs(*argv)
    assert objs
    for obj in objs:
        assert round_trip(obj) == obj, schema.describe(obj)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        pytest.param(lambda d: d["spec"].update(replica=1), "spec.replica", id="misspelt-field"),
        pytest.param(
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image=5),
            "image",
            id="wrong-type",
        ),
        pytest.param(
            lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("name"),
            "name",
            id="missing-required",
        ),
    ],
)
def test_the_model_check_refuses_a_broken_object(mutate: Callable[[Obj], Any], field: str) -> None:
    obj = docs("install")
    dep = by_kind(obj, "Deployment")
    mutate(dep)
    with pytest.raises(InvalidObject, match=r"^Deployment turnout/turnout-controller: .*") as e:
        schema.check_object(dep)
    assert field in str(e.value)


def test_the_installer_prints_nothing_when_an_object_is_invalid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = controller.service_account
    monkeypatch.setattr(
        controller, "service_account", lambda v: {**real(v), "automountToken": False}
    )
    code, out, err = run("install")
    assert (code, out) == (2, "")
    assert err.splitlines()[-1].startswith(
        "error: ServiceAccount turnout/turnout-controller: automountToken: not a field"
    )


def test_the_cluster_role_is_exactly_the_controller_rules(installed: list[Obj]) -> None:
    role = by_kind(installed, "ClusterRole")
    assert role["rules"] == [r.to_raw() for r in controller_rules()]
    binding = by_kind(installed, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"] == names.CONTROLLER
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": names.CONTROLLER, "namespace": names.NAMESPACE}
    ]
    assert not allowed(controller_rules(), "", "secrets", "create")


def test_the_deployment_runs_the_agreed_command_line_as_a_restricted_pod(
    installed: list[Obj],
) -> None:
    dep = by_kind(installed, "Deployment", names.CONTROLLER)
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == names.IMAGE and c["args"] == SERVE
    from_pod = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"][:2]}
    assert from_pod == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    assert c["env"][2:] == [{"name": names.PROXY_IMAGE_ENV, "value": names.IMAGE}]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"grpc-xds": 8086, "admin": 9990, "injector": 8443, "dashboard": 50750}
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "admin"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/live", "port": "admin"}
    assert set(c["resources"]["requests"]) == {"cpu", "memory"}
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and sc["runAsUser"] == 2102
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets[mounts[names.IDENTITY_DIR]] == names.IDENTITY_SECRET
    assert secrets[mounts[names.INJECTOR_CERT_DIR]] == names.INJECTOR_TLS_SECRET
    assert pod["serviceAccountName"] == names.CONTROLLER
    assert dep["spec"]["replicas"] == 1 and "affinity" not in pod
    assert not [o for o in installed if o["kind"] == "PodDisruptionBudget"]


def test_services_reach_the_controller_pods_on_the_agreed_ports(installed: list[Obj]) -> None:
    pod_labels = by_kind(installed, "Deployment")["spec"]["template"]["metadata"]["labels"]
    got = {}
    for svc in (o for o in installed if o["kind"] == "Service"):
        assert svc["spec"]["selector"].items() <= pod_labels.items()
        (port,) = svc["spec"]["ports"]
        got[svc["metadata"]["name"]] = (port["port"], port["targetPort"])
    assert got == {
        names.XDS_SERVICE: (8086, 8086),
        names.IDENTITY_SERVICE: (8086, 8086),
        names.ADMIN_SERVICE: (9990, 9990),
        names.INJECTOR_SERVICE: (443, 8443),
        names.DASHBOARD_SERVICE: (50750, 50750),
    }


def test_viz_values_name_the_clusters_prometheus_or_drop_the_dashboard() -> None:
    url = "http://prometheus.monitoring:9090"
    (c,) = by_kind(docs("install", "--set", f"viz.prometheusUrl={url}"), "Deployment")["spec"][
        "template"
    ]["spec"]["containers"]
    assert c["args"] == [*SERVE, "--prometheus-url", url]
    off = docs("install", "--set", "viz.dashboard=false")
    (c,) = by_kind(off, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert c["args"] == SERVE[:-2]
    assert "dashboard" not in {p["name"] for p in c["ports"]}
    assert names.DASHBOARD_SERVICE not in {o["metadata"]["name"] for o in off}
    code, _, err = run("install", "--set", "viz.prometheusUrl=prometheus:9090")
    assert code == 2 and "viz.prometheusUrl" in err and "http(s) URL" in err


def test_ha_runs_three_replicas_one_per_node_with_a_disruption_budget(ha: list[Obj]) -> None:
    dep = by_kind(ha, "Deployment")
    assert dep["spec"]["replicas"] == 3
    (term,) = dep["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= (
        dep["spec"]["template"]["metadata"]["labels"].items()
    )
    pdb = by_kind(ha, "PodDisruptionBudget")
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": dep["spec"]["selector"]}
    preferred = by_kind(docs("install", "--ha", "--set", "antiAffinity=preferred"), "Deployment")
    assert (
        "preferredDuringSchedulingIgnoredDuringExecution"
        in (preferred["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"])
    )


def secret_files(secret: Obj) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


def test_the_identity_secret_is_an_identity_directory_mesh_serve_loads(
    installed: list[Obj], tmp_path: Path
) -> None:
    files = secret_files(by_kind(installed, "Secret", names.IDENTITY_SECRET))
    assert tuple(files) == FILES
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    m = load_material(tmp_path)
    assert m.settings.domain == "cluster.local"


def test_an_existing_identity_dir_is_used_as_is(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    init_store(ca, IdentitySettings(domain="example.org"), now=utc_now())
    objs = docs("install", "--identity-dir", str(ca))
    files = secret_files(by_kind(objs, "Secret", names.IDENTITY_SECRET))
    assert files == {name: (ca / name).read_bytes() for name in FILES}
    code, out, err = run("install", "--identity-dir", str(tmp_path / "nothing"))
    assert (code, out) == (2, "")
    assert err.startswith("error: --identity-dir: ") and err.count("\n") == 1


def test_the_webhook_trusts_the_ca_of_the_injectors_serving_certificate(
    installed: list[Obj],
) -> None:
    cfg = by_kind(installed, "MutatingWebhookConfiguration")
    (hook,) = cfg["webhooks"]
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["clientConfig"]["service"] == {
        "name": names.INJECTOR_SERVICE,
        "namespace": names.NAMESPACE,
        "path": names.INJECTOR_PATH,
        "port": 443,
    }
    assert (hook["sideEffects"], hook["failurePolicy"]) == ("None", "Ignore")
    assert 1 <= hook["timeoutSeconds"] <= 30
    assert hook["rules"][0]["resources"] == ["pods"]
    (expr,) = hook["namespaceSelector"]["matchExpressions"]
    assert expr["operator"] == "NotIn" and {"turnout", "kube-system"} <= set(expr["values"])
    ca = x509.load_pem_x509_certificate(base64.b64decode(hook["clientConfig"]["caBundle"]))
    tls = by_kind(installed, "Secret", names.INJECTOR_TLS_SECRET)
    assert tls["type"] == "kubernetes.io/tls" and set(tls["data"]) == {
        "tls.crt",
        "tls.key",
        "ca.crt",
    }
    leaf = x509.load_pem_x509_certificate(secret_files(tls)["tls.crt"])
    leaf.verify_directly_issued_by(ca)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {
        "turnout-injector.turnout.svc",
        "turnout-injector.turnout.svc.cluster.local",
    }
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert cfg is installed[-1], "the webhook is applied after the injector it calls"


def test_set_namespace_moves_every_object_and_reference() -> None:
    objs = docs("install", "--set", "namespace=mesh", "--image", "reg.example/turnout:dev")
    for o in objs:
        assert o["metadata"]["labels"][names.PART_OF_LABEL] == "turnout"
        assert o["metadata"].get("namespace", "mesh") == "mesh", schema.describe(o)
    assert by_kind(objs, "Namespace")["metadata"]["name"] == "mesh"
    assert by_kind(objs, "ClusterRoleBinding")["subjects"][0]["namespace"] == "mesh"
    hook = by_kind(objs, "MutatingWebhookConfiguration")["webhooks"][0]
    assert hook["clientConfig"]["service"]["namespace"] == "mesh"
    assert "mesh" in hook["namespaceSelector"]["matchExpressions"][0]["values"]
    pod = by_kind(objs, "Deployment")["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "reg.example/turnout:dev"
    tls = secret_files(by_kind(objs, "Secret", names.INJECTOR_TLS_SECRET))
    leaf = x509.load_pem_x509_certificate(tls["tls.crt"])
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "turnout-injector.mesh.svc" in sans.get_values_for_type(x509.DNSName)


def ref(o: Obj) -> tuple[str, str, str, str]:
    meta = o["metadata"]
    return (o["apiVersion"], o["kind"], meta.get("namespace", ""), meta["name"])


@pytest.mark.parametrize(
    "flags",
    [[], ["--ha"], ["--set", "namespace=mesh"], ["--crds"]],
    ids=["default", "ha", "namespace", "crds"],
)
def test_uninstall_names_everything_install_renders(flags: list[str]) -> None:
    extra = ["--ignore-cluster"] if "--crds" in flags else []
    rendered = docs("install", *flags, *extra)
    named = docs("uninstall", *flags)
    assert [ref(o) for o in named] == [ref(o) for o in reversed(rendered)]
    assert all(set(o) == {"apiVersion", "kind", "metadata"} for o in named)
    if not flags or flags[0] != "--crds":
        assert named[0]["kind"] == "MutatingWebhookConfiguration"
        assert named[-1]["kind"] == "Namespace"


def masked(objs: list[Obj]) -> list[Obj]:
    """The objects without the injector's generated certificate (new on every run)."""
    for o in objs:
        if o["metadata"]["name"] == names.INJECTOR_TLS_SECRET:
            o["data"] = {}
        for hook in o.get("webhooks", ()):
            hook["clientConfig"]["caBundle"] = ""
    return objs


def test_output_is_the_same_for_the_same_inputs_in_yaml_and_json(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    init_store(ca, IdentitySettings(), now=utc_now())
    first = docs("install", "--ha", "--identity-dir", str(ca))
    second = docs("install", "--ha", "--identity-dir", str(ca))
    code, out, _ = run("install", "--ha", "--identity-dir", str(ca), "-o", "json")
    as_json = yaml.safe_load(out)
    assert code == 0 and (as_json["apiVersion"], as_json["kind"]) == ("v1", "List")
    assert masked(first) == masked(second) == masked(as_json["items"])
    assert docs("uninstall", "--ha") == docs("uninstall", "--ha")
    assert docs("install", "--crds", "--ignore-cluster") == docs(
        "install", "--crds", "--ignore-cluster"
    )


def test_another_image_reaches_the_injector_too() -> None:
    dep = by_kind(
        docs("install", "--image", "registry.local/turnout:dev"), "Deployment", names.CONTROLLER
    )
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "registry.local/turnout:dev"
    assert {"name": names.PROXY_IMAGE_ENV, "value": "registry.local/turnout:dev"} in c["env"]


def test_mesh_serve_parses_the_deployments_command_line(installed: list[Obj]) -> None:
    from turnout.cli.main import build_parser

    (c,) = by_kind(installed, "Deployment")["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(c["args"])
    assert args.kubernetes and args.leader_elect and args.run == "control_plane:run_serve"
    assert (args.identity_dir, args.injector_cert_dir) == (
        names.IDENTITY_DIR,
        names.INJECTOR_CERT_DIR,
    )
