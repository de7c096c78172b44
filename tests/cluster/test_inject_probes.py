"""Probe rewriting (Istio's): the injector points each app container's httpGet probe at the
proxy's admin port, ``/app-health/<container>/<livez|readyz|startupz>``, hands the originals
to `mesh proxy --app-probes` and keeps them in ``turnout.dev/app-probes`` so `mesh uninject`
puts them back exactly; ``config.turnout.dev/rewrite-app-probes: "false"`` (the pod's or its
namespace's) leaves them alone; the webhook patches the same pod."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.certs import Authority
from tests.cluster.jsonpatch_apply import apply_patch
from tests.cluster.test_inject_manifests import mk_workload, pod_of, run, write
from tests.cluster.test_inject_pod_ports import flags
from tests.cluster.webhook_support import Injector, mk_pod, write_certs
from turnout.cli.main import build_parser
from turnout.cluster import names
from turnout.cluster.inject.webhook import InjectorWebhook
from turnout.proxy.app_probes import AppProbe

Obj = dict[str, Any]
ADMIN = names.PROXY_ADMIN_PORT


def probed_containers() -> list[Obj]:
    return [
        {
            "name": "web",
            "image": "web:1",
            "ports": [
                {"name": "http", "containerPort": 8080},
                {"name": "admin", "containerPort": 9990},
            ],
            "readinessProbe": {
                "httpGet": {
                    "path": "/ready?full=1",
                    "port": "http",
                    "httpHeaders": [{"name": "X-Probe", "value": "kubelet"}],
                },
                "timeoutSeconds": 3,
                "periodSeconds": 5,
            },
            "livenessProbe": {"httpGet": {"path": "/live", "port": 9990}},
            "startupProbe": {"httpGet": {"path": "/tls", "port": "admin", "scheme": "HTTPS"}},
        },
        {
            "name": "helper",
            "image": "helper:1",
            "ports": [{"name": "metrics", "containerPort": 9102}],
            "readinessProbe": {"httpGet": {"path": "/x", "port": "http"}},  # not its port
            "livenessProbe": {"tcpSocket": {"port": 9102}},
            "startupProbe": {"exec": {"command": ["true"]}},
        },
    ]


def deployment(annotations: Obj | None = None) -> Obj:
    doc = mk_workload("Deployment", annotations=annotations)
    pod_of(doc)["spec"]["containers"] = probed_containers()
    return doc


def inject(tmp_path: Path, doc: Obj) -> tuple[Obj, str]:
    code, out, err = run("inject", "--manual", str(write(tmp_path, doc)))
    assert code == 0, err
    return next(yaml.safe_load_all(out)), err


def test_http_probes_go_to_the_admin_port_and_the_originals_to_the_proxy(tmp_path: Path) -> None:
    pod = pod_of(inject(tmp_path, deployment())[0])
    proxy, web, helper = pod["spec"]["containers"]
    assert web["readinessProbe"] == {
        "httpGet": {"path": "/app-health/web/readyz", "port": ADMIN, "scheme": "HTTP"},
        "timeoutSeconds": 3,
        "periodSeconds": 5,
    }
    assert web["livenessProbe"]["httpGet"] == {"path": "/app-health/web/livez", "port": ADMIN, "scheme": "HTTP"}  # fmt: skip
    assert web["startupProbe"]["httpGet"]["path"] == "/app-health/web/startupz"
    # a probe its container cannot resolve, tcpSocket and exec: as written
    assert helper == probed_containers()[1]
    # the proxy's own probes stay on its own paths
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/ready", "port": ADMIN}
    assert proxy["livenessProbe"]["httpGet"] == {"path": "/live", "port": ADMIN}

    (value,) = flags(proxy["args"], "--app-probes")
    assert json.loads(value) == {
        "web/readyz": {
            "port": 8080,
            "path": "/ready?full=1",
            "scheme": "HTTP",
            "httpHeaders": [{"name": "X-Probe", "value": "kubelet"}],
            "timeoutSeconds": 3,
        },
        "web/livez": {"port": 9990, "path": "/live", "scheme": "HTTP", "timeoutSeconds": 1},
        "web/startupz": {"port": 9990, "path": "/tls", "scheme": "HTTPS", "timeoutSeconds": 1},
    }
    parsed = dict(build_parser().parse_args(proxy["args"]).app_probes)
    assert parsed["web/readyz"] == AppProbe(
        port=8080, path="/ready?full=1", headers=(("X-Probe", "kubelet"),), timeout_s=3.0
    )
    # --probe still names the app ports' own probe paths (PERMISSIVE callers of them)
    assert flags(proxy["args"], "--probe") == ["9990:/live", "8080:/ready"]
    originals = json.loads(pod["metadata"]["annotations"][names.APP_PROBES_ANNOTATION])
    want = probed_containers()[0]
    assert originals == {"web": {k: want[k]["httpGet"] for k in ("livenessProbe", "readinessProbe", "startupProbe")}}  # fmt: skip


def test_a_pod_without_http_probes_gets_no_flag_and_no_annotation(tmp_path: Path) -> None:
    pod = pod_of(inject(tmp_path, mk_workload("Pod"))[0])
    assert "--app-probes" not in pod["spec"]["containers"][0]["args"]
    assert names.APP_PROBES_ANNOTATION not in pod["metadata"]["annotations"]


def test_the_opt_out_annotation_leaves_the_probes_on_the_app_ports(tmp_path: Path) -> None:
    pod = pod_of(inject(tmp_path, deployment({names.REWRITE_APP_PROBES: "false"}))[0])
    assert pod["spec"]["containers"][1:] == probed_containers()
    args = pod["spec"]["containers"][0]["args"]
    assert "--app-probes" not in args
    assert flags(args, "--probe") == ["9990:/live", "8080:/ready"]  # Linkerd's probe route
    assert names.APP_PROBES_ANNOTATION not in pod["metadata"]["annotations"]
    # a bad value is a warning and the default (rewrite) stays
    doc, err = inject(tmp_path, deployment({names.REWRITE_APP_PROBES: "no"}))
    assert f"{names.REWRITE_APP_PROBES}: want true | false, got 'no' (ignored)" in err
    assert pod_of(doc)["spec"]["containers"][1]["livenessProbe"]["httpGet"]["port"] == ADMIN


@pytest.mark.parametrize("kind", ["Deployment", "Pod"])
def test_inject_twice_is_once_and_uninject_restores_the_probes_exactly(
    kind: str, tmp_path: Path
) -> None:
    doc = mk_workload(kind)
    pod_of(doc)["spec"]["containers"] = probed_containers()
    _, once, _ = run("inject", "--manual", str(write(tmp_path, doc)))
    _, twice, _ = run(
        "inject", "--manual", str(write(tmp_path, yaml.safe_load(once), name="1.yaml"))
    )
    assert twice == once
    assert "/app-health/" in once
    code, out, err = run("uninject", str(write(tmp_path, yaml.safe_load(once), name="2.yaml")))
    assert code == 0, err
    assert yaml.safe_load(out) == doc


def test_uninject_keeps_a_probe_the_user_changed_since(tmp_path: Path) -> None:
    injected, _ = inject(tmp_path, deployment())
    web = pod_of(injected)["spec"]["containers"][1]
    web["livenessProbe"]["httpGet"] = {"path": "/mine", "port": 7000}
    _, out, _ = run("uninject", str(write(tmp_path, injected, name="changed.yaml")))
    back = pod_of(yaml.safe_load(out))
    assert back["spec"]["containers"][0]["livenessProbe"]["httpGet"] == {"path": "/mine", "port": 7000}  # fmt: skip
    assert back["spec"]["containers"][0]["readinessProbe"] == probed_containers()[0]["readinessProbe"]  # fmt: skip
    assert names.APP_PROBES_ANNOTATION not in (back["metadata"].get("annotations") or {})


async def test_the_webhook_rewrites_the_same_probes_and_honours_a_namespaces_opt_out(
    tmp_path: Path,
) -> None:
    authority = Authority()
    write_certs(tmp_path / "certs", authority)

    async def namespaces(namespace: str) -> Mapping[str, str] | None:
        opt_out = {names.REWRITE_APP_PROBES: "false"} if namespace == "legacy" else {}
        return {names.INJECT_ANNOTATION: "enabled", **opt_out}

    webhook = InjectorWebhook(tmp_path / "certs", namespace_annotations=namespaces)
    port = await webhook.start("127.0.0.1", 0)
    try:
        client = Injector(f"https://127.0.0.1:{port}", authority.ca_pem)
        pod = mk_pod()
        pod["spec"]["containers"] = probed_containers()
        _, ops = await client.review(pod)
        assert ops is not None
        patched = apply_patch(copy.deepcopy(pod), ops)
        assert patched == pod_of(inject(tmp_path, pod)[0])  # what `mesh inject --manual` writes
        assert patched["spec"]["containers"][1]["readinessProbe"]["httpGet"]["path"] == "/app-health/web/readyz"  # fmt: skip
        assert (await client.review(patched))[1] is None  # injected: untouched

        legacy = mk_pod("legacy")
        legacy["spec"]["containers"] = probed_containers()
        _, ops = await client.review(legacy)
        assert ops is not None
        patched = apply_patch(copy.deepcopy(legacy), ops)
        assert patched["spec"]["containers"][1:] == probed_containers()
        assert "--app-probes" not in patched["spec"]["containers"][0]["args"]
    finally:
        await webhook.stop()
