"""The controller as the rendered Deployment runs it, for the walkthrough: its RBAC identity
in the fake, one replica (a real `mesh serve` process and its pod), and the Services'
wiring. Everything comes from what `mesh install` printed, applied to the fake.

```
ClusterRoleBinding ─> ServiceAccount user + the ClusterRole's rules ─> MeshFake.enforce_for
Deployment template ─> pod NAME (Running, Ready once its probes answer)
                    ─> Secret volumes (kubelet layout) ─> mesh serve ARGS --kubeconfig SA
Services ─> (ns, name, port) -> the replica's bound address; the API server's proxy too
```
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.cluster.emojivoto import pod_of, scheduled
from tests.cluster.walkthrough_kit import (
    MeshFake,
    Obj,
    Process,
    bound_ports,
    container_env,
    endpoints,
    kubeconfig,
    local_args,
    ok,
    probe_urls,
    rules_of,
    secret_volume,
    start_mesh,
    until,
)
from turnout.cluster import names

SA_TOKEN = "controller-sa-token"


def find(objs: Iterable[Obj], kind: str, name: str) -> Obj:
    (obj,) = [o for o in objs if (o["kind"], o["metadata"]["name"]) == (kind, name)]
    return obj


def controller_account(fake: MeshFake, installed: list[Obj], tmp: Path) -> Path:
    """The fake enforces the rendered ClusterRole on the ServiceAccount its binding names;
    the kubeconfig (standing for the in-cluster config) is that account's."""
    deploy = find(installed, "Deployment", names.CONTROLLER)
    binding = find(installed, "ClusterRoleBinding", names.CONTROLLER)
    role = find(installed, "ClusterRole", binding["roleRef"]["name"])
    (subject,) = binding["subjects"]
    account = deploy["spec"]["template"]["spec"]["serviceAccountName"]
    assert (subject["kind"], subject["name"]) == ("ServiceAccount", account)
    user = f"system:serviceaccount:{subject['namespace']}:{subject['name']}"
    fake.enforce_for(SA_TOKEN, rules_of(role), user=user)
    return kubeconfig(tmp / "controller-kubeconfig", fake.url, token=SA_TOKEN, user=user)


@dataclass
class Replica:
    process: Process
    pod: Obj
    container: Obj
    ports: dict[int, str]
    """containerPort -> the address this process bound for it."""

    @property
    def name(self) -> str:
        return str(self.pod["metadata"]["name"])


async def start_replica(
    fake: MeshFake, installed: list[Obj], tmp: Path, *, suffix: str, sa_config: Path
) -> Replica:
    """One pod of the controller Deployment: its process up, its probes answering, its pod
    Ready in the fake (the kubelet's part)."""
    deploy = find(installed, "Deployment", names.CONTROLLER)
    template = deploy["spec"]["template"]
    pod_spec = template["spec"]
    (container,) = pod_spec["containers"]
    pod = scheduled(
        pod_of(template, namespace=deploy["metadata"]["namespace"], owner=names.CONTROLLER),
        f"{names.CONTROLLER}-{suffix}",
    )
    env = container_env(container, pod)
    mounts = {}
    for mount in container["volumeMounts"]:
        (vol,) = [v for v in pod_spec["volumes"] if v["name"] == mount["name"]]
        if "secret" in vol:
            secret = find(installed, "Secret", vol["secret"]["secretName"])
            mode = vol["secret"].get("defaultMode", 0o644)
            directory = tmp / pod["metadata"]["name"] / mount["name"]
            mounts[mount["mountPath"]] = secret_volume(secret, directory, mode=mode)
    argv = local_args(container["args"], env=env, mounts=mounts, hosts={})
    assert argv[:2] == ["serve", "--kubernetes"], argv
    process = await start_mesh(
        [*argv, "--kubeconfig", str(sa_config)],
        env=env,
        ready_prefix="serving",
        stderr=tmp / f"{pod['metadata']['name']}.log",
    )
    printed = {
        flag: process.line(f"{flag} listening on ").split()[3]
        for flag in ("xds", "admin", "injector")
    }
    dashboard = process.line("dashboard listening on ").split()[3]  # http://H:P/
    printed["dashboard"] = dashboard.removeprefix("http://").rstrip("/")
    replica = Replica(process, pod, container, bound_ports(container["args"], printed))
    probes = probe_urls(container, replica.ports)
    assert set(probes) == {"readinessProbe", "livenessProbe"}, probes
    for url in probes.values():
        await until(f"{url} answers 200", lambda url=url: ok(url))
    fake.apply(pod)
    # the API server's pod proxy reaches each replica's admin port (mesh check asks each)
    admin = replica.ports[names.ADMIN_PORT]
    fake.forward(pod["metadata"]["namespace"], replica.name, names.ADMIN_PORT,
                 f"http://{admin}", resource="pods")  # fmt: skip
    return replica


def ready_deployment(fake: MeshFake, installed: list[Obj], ready: int) -> None:
    """The Deployment's status as its controller reports `ready` pods."""
    deploy = find(installed, "Deployment", names.CONTROLLER)
    want = deploy["spec"]["replicas"]
    status = {"replicas": want, "readyReplicas": ready, "availableReplicas": ready,
              "updatedReplicas": want}  # fmt: skip
    fake.apply({**deploy, "status": status})


def wire_services(
    fake: MeshFake, installed: list[Obj], replica: Replica
) -> dict[tuple[str, str, int], str]:
    """Every rendered Service's ports to `replica` (kube-proxy's choice of an endpoint), and
    the API server's service proxy (https for a port named https). Returns the wiring."""
    services = [o for o in installed if o["kind"] == "Service"]
    behind = endpoints(services, replica.pod, replica.container, replica.ports)
    for (ns, name, port), addr in behind.items():
        (spec_port,) = [
            p for p in find(installed, "Service", name)["spec"]["ports"] if p["port"] == port
        ]
        scheme = "https" if spec_port["name"] == "https" else "http"
        fake.forward(ns, name, port, f"{scheme}://{addr}")
    return behind


def lease_holder(fake: MeshFake) -> Any:
    lease = fake.objects.get(("coordination.k8s.io", "Lease"), {}).get(
        (names.NAMESPACE, names.LEASE)
    )
    return (lease or {}).get("spec", {}).get("holderIdentity") or None
