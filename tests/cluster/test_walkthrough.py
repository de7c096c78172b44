"""The seed's walkthrough, end to end, against the fake API server: every part of "Turnout on
a real cluster" (issue 14) fed only what the part before it printed or wrote.

```
mesh check --pre ─> mesh install --crds | apply ─> mesh install | apply
   └─> mesh serve (the Deployment's args; the Secrets as volumes; the ClusterRole enforced)
   └─> mesh check ─> mesh inject web.yaml ─> AdmissionReview ─> the real webhook (caBundle)
   └─> mesh proxy (the injected sidecar's args; a token TokenReview accepts)
   └─> mesh check --proxy ─> an HTTPRoute: the proxy redirects, its status is written
   └─> mesh upgrade | apply: the same Secrets, mesh check still √
   └─> mesh uninstall | delete (then --crds): nothing of ours is left
```

No kubelet runs here: the test marks the controller's and web's pods Running and Ready,
mounts their Secret volumes as directories (as the kubelet lays them out), and runs their containers as local processes
(`walkthrough_kit`). Gateway API CRDs come from upstream (not ours to ship): `mk_crd`.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from pathlib import Path
from typing import Any

from tests.cluster import kubectl
from tests.cluster.check_kit import mk_crd
from tests.cluster.controller_kit import (
    SA_TOKEN,
    controller_account,
    find,
    lease_holder,
    ready_deployment,
    start_replica,
    wire_services,
)
from tests.cluster.emojivoto import (
    APP,
    HASH,
    deployment,
    pod_of,
    redirect_route,
    scheduled,
    web_manifest,
)
from tests.cluster.jsonpatch_apply import apply_patch
from tests.cluster.walkthrough_kit import (
    ADMIN_TOKEN,
    MeshFake,
    bound_ports,
    container_env,
    get,
    kubeconfig,
    local_args,
    ok,
    over_mesh_tls,
    patched,
    probe_urls,
    running,
    secret_file,
    start_app,
    start_mesh,
    until,
)
from tests.cluster.webhook_support import Injector
from tests.engine.sources.k8s_fake import TOKEN_REVIEWS
from tests.proxy.e2e.harness import bounded
from turnout.cli.main import main
from turnout.cluster import names
from turnout.cluster.check.control_plane import STANDARD_GATEWAY_KINDS
from turnout.engine.config import CONTROLLER_NAME
from turnout.engine.identity.settings import TOKEN_AUDIENCE

NS = names.NAMESPACE


async def mesh(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(main, list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def kind_of(fake: MeshFake, api_version: str, kind: str) -> Any:
    return kubectl.served_kind(fake, {"apiVersion": api_version, "kind": kind, "metadata": {}})


@bounded(40)
async def test_the_walkthrough_from_check_pre_to_uninstall(tmp_path: Path) -> None:
    t0 = time.monotonic()
    took: dict[str, float] = {}
    async with MeshFake() as fake:
        admin = str(kubeconfig(tmp_path / "admin", fake.url, token=ADMIN_TOKEN, user="admin"))
        for spec in STANDARD_GATEWAY_KINDS:  # kubectl apply -f standard-install.yaml
            fake.apply(mk_crd(spec))

        # 1. mesh check --pre
        code, out, err = await mesh("check", "--pre", "--kubeconfig", admin)
        assert code == 0 and "×" not in out, out + err

        # 2. mesh install --crds | kubectl apply -f -; mesh install | kubectl apply -f -
        code, crds, err = await mesh("install", "--crds", "--kubeconfig", admin)
        assert code == 0, err
        assert "warning" not in err, err
        applied_crds = kubectl.apply(fake, crds)
        code, manifest, err = await mesh("install")
        assert code == 0, err
        installed = kubectl.apply(fake, manifest)
        took["install"] = time.monotonic() - t0

        # 3. the controller, as the Deployment runs it (its ServiceAccount, its ClusterRole)
        sa_config = controller_account(fake, installed, tmp_path)
        replica = await start_replica(
            fake, installed, tmp_path, suffix=f"{HASH}-x7k2p", sa_config=sa_config
        )
        async with running(replica.process):
            took["serve"] = time.monotonic() - t0
            container = replica.container
            template = find(installed, "Deployment", names.CONTROLLER)["spec"]["template"]
            ready_deployment(fake, installed, 1)
            behind = wire_services(fake, installed, replica)
            svc_ports = {(name, port): (ns, name, port) for ns, name, port in behind}
            await until("the Lease is held", lambda: lease_holder(fake))
            assert lease_holder(fake) == replica.name

            # 4. mesh check: all √
            code, out, err = await mesh("check", "--kubeconfig", admin)
            assert code == 0, out + err
            assert "×" not in out and "‼" not in out, out
            took["check"] = time.monotonic() - t0

            # 5. mesh inject web.yaml | kubectl apply -f -, and the pod the ReplicaSet creates
            (tmp_path / "web.yaml").write_text(web_manifest())
            code, injected, err = await mesh("inject", str(tmp_path / "web.yaml"))
            assert code == 0, err
            report = [line for line in err.splitlines() if line]
            assert report == [f'namespace "{APP}" annotated', 'deployment "web" injected'], err
            web = kubectl.apply(fake, injected)
            web_deploy = find(web, "Deployment", "web")
            webhook = find(installed, "MutatingWebhookConfiguration", names.WEBHOOK_CONFIGURATION)
            ca = base64.b64decode(webhook["webhooks"][0]["clientConfig"]["caBundle"])
            hook = webhook["webhooks"][0]["clientConfig"]["service"]
            assert hook["path"] == names.INJECTOR_PATH
            injector_addr = behind[(hook["namespace"], hook["name"], hook["port"])]
            client = Injector(f"https://{injector_addr}", ca)  # verifies against the caBundle
            new_pod = pod_of(web_deploy["spec"]["template"], namespace=APP, owner="web")
            response, patch = await client.review(new_pod)
            assert patch is not None, response
            pod = scheduled(apply_patch(new_pod, patch), f"web-{HASH}-q8z4m")
            fake.apply(pod)
            # the namespace's annotation reaches the webhook through the controller's watch:
            # a Deployment applied as it is (kubectl apply -f emoji.yml) is injected too
            emoji = fake.apply(deployment("emoji", {"app": "emoji-svc"}))
            emoji_pod = pod_of(emoji["spec"]["template"], namespace=APP, owner="emoji")
            await until("the namespace is meshed", lambda: patched(client, emoji_pod))
            # the control plane's own pods are never injected
            own = pod_of(template, namespace=NS, owner=names.CONTROLLER)
            assert (await client.review(own))[1] is None
            (init,) = pod["spec"]["initContainers"]
            (sidecar,) = [
                c for c in pod["spec"]["containers"] if c["name"] == names.PROXY_CONTAINER
            ]
            assert sidecar["image"] == init["image"] == container["image"], "mesh install's image"
            code, rules, err = await mesh(*init["args"], "--dry-run")
            assert code == 0 and "-j REDIRECT" in rules, rules + err
            took["inject"] = time.monotonic() - t0

            # 6. mesh proxy, as the sidecar runs it
            (sidecar,) = [
                c for c in pod["spec"]["containers"] if c["name"] == names.PROXY_CONTAINER
            ]
            # the kubelet mounts the projected token; TokenReview accepts it for its audience
            token_file = sidecar["args"][sidecar["args"].index("--identity-token-file") + 1]
            (token_mount,) = [
                m for m in sidecar["volumeMounts"] if token_file.startswith(m["mountPath"] + "/")
            ]
            (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == token_mount["name"]]
            (source,) = volume["projected"]["sources"]
            assert source["serviceAccountToken"]["audience"] == TOKEN_AUDIENCE
            token_dir = tmp_path / "web" / "token"
            token_dir.mkdir(parents=True)
            token_path = source["serviceAccountToken"]["path"]
            assert token_file == f"{token_mount['mountPath']}/{token_path}"
            (token_dir / token_path).write_text("web-sa-token")
            fake.add_token(
                "web-sa-token", f"system:serviceaccount:{APP}:web", audiences=[TOKEN_AUDIENCE]
            )
            hosts = {
                f"{name}.{ns}.svc.cluster.local:{port}": a for (ns, name, port), a in behind.items()
            }
            xds = behind[svc_ports[(names.XDS_SERVICE, names.XDS_PORT)]]
            proxy_argv = local_args(
                sidecar["args"], env=container_env(sidecar, pod),
                mounts={token_mount["mountPath"]: token_dir}, hosts=hosts,
            )  # fmt: skip
            assert proxy_argv[0] == "proxy" and xds in proxy_argv, proxy_argv
            # no iptables here: the inbound connections are not redirected, so --app says
            # where they go (what a redirected one to 8080 reaches: 127.0.0.1:8080)
            app_runner, app_addr = await start_app()
            proxy = await start_mesh(
                [*proxy_argv, "--app", app_addr],
                env={}, ready_prefix="proxy ", stderr=tmp_path / "proxy.log",
            )  # fmt: skip
            async with running(proxy):
                line = proxy.lines[-1]
                printed = {
                    "outbound": line.split("outbound ")[1].split(",")[0],
                    "inbound": line.split("inbound ")[1].split(" ")[0],
                    "admin": line.split("admin ")[1].split(",")[0],
                }
                outbound = printed["outbound"]
                proxy_ports = bound_ports(sidecar["args"], printed)
                assert set(proxy_ports) == {
                    names.PROXY_OUTBOUND_PORT, names.PROXY_INBOUND_PORT, names.PROXY_ADMIN_PORT
                }  # fmt: skip
                probes = probe_urls(sidecar, proxy_ports)
                assert {"readinessProbe", "livenessProbe"} <= set(probes), probes
                for url in probes.values():
                    await until(f"the sidecar's {url}", lambda url=url: ok(url))
                took["proxy"] = time.monotonic() - t0
                # its inbound port presents the identity the controller issued, under the
                # trust anchor of the turnout-identity Secret mesh install rendered
                inbound = printed["inbound"]
                anchor = secret_file(find(installed, "Secret", names.IDENTITY_SECRET), "bundle.pem")
                identity = proxy_argv[proxy_argv.index("--identity") + 1]
                assert identity == f"web.{APP}.serviceaccount.identity.cluster.local"
                body = await until(
                    "the app over mesh TLS", lambda: over_mesh_tls(inbound, anchor, identity)
                )
                assert body == "emojivoto web"
                reviews = [c for c in fake.calls if c.path == TOKEN_REVIEWS]
                assert reviews and all((c.token, c.status) == (SA_TOKEN, 201) for c in reviews)

                # 7. mesh check --proxy -n emojivoto
                code, out, err = await mesh(
                    "check", "--proxy", "-n", APP, "--kubeconfig", admin, "-o", "wide"
                )
                assert code == 0, out + err
                assert "√ data plane proxies are on the current config version" in out, out
                row = next(r for r in out.splitlines() if r.startswith(pod["metadata"]["name"]))
                assert row.split()[1:5] == ["SYNCED"] * 4, out

                # 8. an HTTPRoute reaches the proxy; its status is written
                fake.apply(redirect_route("/moved"))
                host = "web-svc.emojivoto.svc.cluster.local"

                async def redirected(to: str) -> bool:
                    status, _, headers = await get(f"http://{outbound}/", Host=host)
                    return status == 302 and headers.get("Location", "").endswith(to)

                route_kind = kind_of(fake, "gateway.networking.k8s.io/v1", "HTTPRoute")

                def status_seen(generation: int) -> bool:
                    route = fake.get(route_kind, APP, "web-redirect")
                    parents = (route.get("status") or {}).get("parents") or []
                    ours = [p for p in parents if p.get("controllerName") == CONTROLLER_NAME]
                    assert route["metadata"]["generation"] == generation
                    return bool(ours) and all(
                        c.get("observedGeneration") == generation and c["status"] == "True"
                        for c in ours[0]["conditions"]
                    )

                await until("the route reaches the proxy", lambda: redirected("/moved"))
                await until("the route's status is written", lambda: status_seen(1))
                fake.apply(redirect_route("/moved-again"))  # generation 2
                await until("the change reaches the proxy", lambda: redirected("/moved-again"))
                await until("the status follows the generation", lambda: status_seen(2))
                took["route"] = time.monotonic() - t0
                assert fake.refusals == [], f"the controller was refused: {fake.refusals}"
                by_sa = {(c.method, c.path) for c in fake.calls if c.token == SA_TOKEN}
                assert (
                    "PUT",
                    f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{names.LEASE}",
                ) in by_sa or any(m == "POST" and p.endswith("/leases") for m, p in by_sa), by_sa
                status_path = f"/apis/gateway.networking.k8s.io/v1/namespaces/{APP}/httproutes/web-redirect/status"
                assert any(p == status_path for _, p in by_sa), by_sa

            await app_runner.cleanup()

            # 9. mesh upgrade | kubectl apply -f -: the same anchor and webhook certificate
            code, upgrade, err = await mesh("upgrade", "--kubeconfig", admin)
            assert code == 0, err
            for name in (names.IDENTITY_SECRET, names.INJECTOR_TLS_SECRET):
                assert (
                    find(list(kubectl.documents(upgrade)), "Secret", name)["data"]
                    == find(installed, "Secret", name)["data"]
                )
            kubectl.apply(fake, upgrade)
            code, out, err = await mesh("check", "--kubeconfig", admin)
            assert code == 0, out + err

        # 10. mesh uninstall | kubectl delete -f - (the Deployment's pods go with it)
        code, refs, err = await mesh("uninstall")
        assert code == 0, err
        kubectl.delete(fake, refs)
        left = kubectl.ours(fake)
        assert left == sorted(
            ("CustomResourceDefinition", "", c["metadata"]["name"]) for c in applied_crds
        ), left
        code, refs, err = await mesh("uninstall", "--crds")
        assert code == 0, err
        kubectl.delete(fake, refs)
        assert kubectl.ours(fake) == []
        took["uninstall"] = time.monotonic() - t0
    print(
        "walkthrough timings (s since start):",
        json.dumps({k: round(v, 2) for k, v in took.items()}),
    )
