"""The sidecar's ``--port-name`` / ``--probe`` flags from the app containers: named ports,
HTTP probes (a named probe port resolved through the container ports), what adds nothing
(HTTPS, exec, tcpSocket, an unknown port name), and `mesh proxy` accepting the result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.cluster.test_inject_manifests import mk_workload, pod_of, run, write
from turnout.cli.main import build_parser
from turnout.cluster import names

Obj = dict[str, Any]


def flags(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def emojivoto_web() -> Obj:
    doc = mk_workload("Deployment", account="web")
    spec = pod_of(doc)["spec"]
    spec["containers"] = [
        {
            "name": "web-svc",
            "image": "web:1",
            "ports": [
                {"name": "http", "containerPort": 8080},
                {"name": "admin", "containerPort": 9990},
                {"containerPort": 7000},
            ],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}},
            "livenessProbe": {"httpGet": {"path": "/live?full=1", "port": 9990}},
            "startupProbe": {"httpGet": {"path": "/ready", "port": 8080}},  # a repeat
        },
        {
            "name": "helper",
            "image": "helper:1",
            "ports": [
                {"name": "http", "containerPort": 8181},
                {"name": "metrics", "containerPort": 9102},
            ],
            "readinessProbe": {"httpGet": {"path": "/tls", "port": "metrics", "scheme": "HTTPS"}},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},  # its own http
            "startupProbe": {"httpGet": {"path": "/x", "port": "admin"}},  # not its port
        },
        {
            "name": "tcp",
            "image": "t:1",
            "readinessProbe": {"tcpSocket": {"port": 7000}},
            "livenessProbe": {"exec": {"command": ["true"]}},
        },
    ]
    return doc


def test_named_ports_and_http_probes_become_proxy_flags(tmp_path: Path) -> None:
    code, out, err = run("inject", "--manual", str(write(tmp_path, emojivoto_web())))
    assert code == 0, err
    pod = pod_of(next(yaml.safe_load_all(out)))
    proxy = pod["spec"]["containers"][0]
    assert proxy["name"] == names.PROXY_CONTAINER
    args = proxy["args"]
    # a Server's port name: the first container port of that name (Linkerd's rule)
    assert flags(args, "--port-name") == ["http=8080", "admin=9990", "metrics=9102"]
    # a probe's port name: its own container's port (the kubelet's); the query is not matched
    assert flags(args, "--probe") == ["9990:/live", "8080:/ready", "8181:/healthz"]
    # the proxy's own probes (admin port 4191) are not among them: it answers those itself
    parsed = build_parser().parse_args(args)
    assert parsed.port_name == [("http", 8080), ("admin", 9990), ("metrics", 9102)]
    assert parsed.probe == [(9990, "/live"), (8080, "/ready"), (8181, "/healthz")]


def test_a_pod_without_names_or_probes_gets_no_flags(tmp_path: Path) -> None:
    code, out, _ = run("inject", "--manual", str(write(tmp_path, mk_workload("Pod"))))
    assert code == 0
    args = pod_of(next(yaml.safe_load_all(out)))["spec"]["containers"][0]["args"]
    assert "--port-name" not in args and "--probe" not in args


def test_bad_port_name_and_probe_flags_are_one_line_errors() -> None:
    for argv, want in (
        (["--port-name", "http"], "want NAME=PORT (http=8080), got 'http'"),
        (["--port-name", "http=99999"], "port 1-65535"),
        (["--port-name", "Bad_Name=80"], "want NAME=PORT"),
        (["--probe", "8080/ready"], "want PORT:PATH (8080:/ready), got '8080/ready'"),
        (["--probe", "http:/ready"], "port 1-65535"),
    ):
        code, _, err = run("proxy", "--xds", "127.0.0.1:1", *argv)
        assert code != 0 and want in err, (argv, err)
        assert len(err.strip().splitlines()) <= 2, err
