"""Ordinary mistakes on every command: one line on stderr saying what and where, no
traceback, and the documented exit code (0 ok, 1 findings, 2 usage or load errors).

The commands that only read run in process through `main`; `mesh proxy` runs as a real
process (its compile is a child process, and a check that let a bad line through would start
a proxy that never exits), bounded by a timeout.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from turnout.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
EX = str(ROOT / "examples" / "emojivoto")
CONTRACT = str(ROOT / "examples" / "contracts" / "emojivoto.yaml")
MESH = Path(sys.executable).parent / "mesh"
URL = ("--url", "http://web.emojivoto/")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "empty.yaml").write_text("# nothing here yet\n")
    (tmp_path / "no-manifests").mkdir()
    (tmp_path / "no-manifests" / "notes.txt").write_text("not a manifest")
    return {
        "MISSING": str(tmp_path / "missing.yaml"),
        "EMPTY": str(tmp_path / "empty.yaml"),
        "EMPTY_DIR": str(tmp_path / "no-manifests"),
        "NO_DIR": str(tmp_path / "no" / "such" / "dir" / "report.xml"),
    }


def expand(argv: tuple[str, ...], files: dict[str, str]) -> list[str]:
    return [files.get(a, a) for a in argv]


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


USAGE = [
    pytest.param(("nosuch",), "invalid choice: 'nosuch'", id="unknown-command"),
    pytest.param(("validate",), "required: -f/--filename", id="validate-without-f"),
    pytest.param(("demo", "--rps", "0"), "--rps: must be > 0, got 0", id="demo-rps-0"),
    pytest.param(("demo", "--rps", "-2"), "--rps: must be > 0, got -2", id="demo-rps-negative"),
    pytest.param(("demo", "--rps", "nan"), "--rps: must be > 0", id="demo-rps-nan"),
    pytest.param(("demo", "--rps", "lots"), "want a number > 0, got 'lots'", id="demo-rps-word"),
    pytest.param(("demo", "--interval", "0"), "--interval: must be > 0", id="demo-interval"),
    pytest.param(("demo", "--duration", "-1"), "--duration: must be > 0", id="demo-duration"),
    pytest.param(
        ("demo", "canary", "--step-seconds", "0"), "--step-seconds: must be > 0", id="canary-step"
    ),
    pytest.param(
        ("tap", "--admin", "127.0.0.1:1", "--max-rps", "-1"),
        "--max-rps: must be >= 0",
        id="tap-rps",
    ),
    pytest.param(
        ("tap", "--admin", "127.0.0.1:1", "--limit", "-3"), "--limit: must be >= 0", id="tap-limit"
    ),
    pytest.param(
        ("tap", "--admin", "127.0.0.1:1", "--limit", "x"),
        "want a number >= 0",
        id="tap-limit-is-a-number",
    ),
    pytest.param(("tap", "--admin", "nohost"), "want HOST:PORT", id="tap-admin"),
    pytest.param(
        ("bootstrap", "--xds", "127.0.0.1", "--workload", "deployment/web"),
        "--xds: want HOST:PORT (port 0..65535), got '127.0.0.1'",
        id="bootstrap-xds",
    ),
    pytest.param(
        ("bootstrap", "--xds", "127.0.0.1:1", "--workload", "web"),
        "--workload: want KIND/NAME (deployment/web), got 'web'",
        id="bootstrap-workload",
    ),
    pytest.param(("routes", "-f", EX, "--live"), "--live needs --metrics", id="live-no-metrics"),
    pytest.param(
        ("routes", "-f", EX, "--live", "--metrics", "127.0.0.1:1", "-o", "yaml"),
        "--live shows -o table, -o wide or -o json",
        id="live-yaml",
    ),
    pytest.param(
        ("routes", "-f", EX, "--live", "--metrics", "127.0.0.1:1", "--window", "0"),
        "--window must be > 0, got 0",
        id="live-window",
    ),
]

LOAD = [
    pytest.param(
        ("validate", "-f", "MISSING"), "missing.yaml: no such file", id="validate-missing"
    ),
    pytest.param(("validate", "-f", "EMPTY"), "no objects passed to validate", id="validate-empty"),
    pytest.param(
        ("validate", "-f", "EMPTY_DIR"), "no objects passed to validate", id="validate-empty-dir"
    ),
    pytest.param(("routes", "-f", "MISSING"), "missing.yaml: no such file", id="routes-missing"),
    pytest.param(("routes", "-f", "EMPTY"), "no objects passed to routes", id="routes-empty"),
    pytest.param(
        ("routes", "explain", "-f", "MISSING", "--via", "svc/web", *URL),
        "missing.yaml: no such file",
        id="explain-missing",
    ),
    pytest.param(
        ("routes", "explain", "-f", "EMPTY", "--via", "svc/web", *URL),
        "no objects passed to explain",
        id="explain-empty",
    ),
    pytest.param(
        ("routes", "explain", "-f", EX, "--via", "web", *URL), "--via: want KIND/NS/NAME", id="via"
    ),
    pytest.param(
        ("routes", "explain", "-f", EX, "--via", "pod/emojivoto/web:80", *URL),
        "--via: want KIND/NS/NAME[:PORT] or KIND/NAME[:PORT]",
        id="via-kind",
    ),
    pytest.param(
        ("routes", "explain", "-f", EX, "--via", "svc/emojivoto/web:0", *URL),
        "--via: want",
        id="via-port-0",
    ),
    pytest.param(
        ("routes", "explain", "-f", EX, "--via", "service/emojivoto/web", "-n", "shop", *URL),
        "names namespace 'emojivoto' but -n says 'shop'",
        id="via-namespace-conflict",
    ),
    pytest.param(
        ("routes", "explain", "-f", EX, "--via", "svc/nope", "-n", "emojivoto", *URL),
        "no parent service/emojivoto/nope in the manifests (services: service/emojivoto/emoji:8080",
        id="via-unknown-service",
    ),
    pytest.param(
        ("routes", "explain", "-f", EX, "--via", "service/emojivoto/web:8080", *URL),
        "no parent service/emojivoto/web:8080 in the manifests",
        id="via-unknown-port",
    ),
    pytest.param(
        ("routes", "explain", "-f", EX, "--via", "gtw/emojivoto/public", *URL),
        "gateway/emojivoto/public has ports 80, 443: name one (gateway/emojivoto/public:PORT)",
        id="via-gateway-two-ports",
    ),
    pytest.param(
        ("routes", "explain", "-f", EX, "--via", "svc/emojivoto/web", "-H", "x-canary", *URL),
        "-H must be 'Name: value', got 'x-canary'",
        id="explain-header",
    ),
    pytest.param(
        ("routes", "explain", "-f", EX, "--via", "svc/emojivoto/web", "--url", "/api"),
        "--url: url must be absolute",
        id="explain-url",
    ),
    pytest.param(
        ("routes", "explain", "-f", EX, "--via", "svc/emojivoto/web", "-X", "", *URL),
        "-X/--method must be an HTTP method (a token), got ''",
        id="explain-method",
    ),
    pytest.param(
        ("test", "-f", EX, "MISSING"),
        "missing.yaml: cannot read: No such file or directory",
        id="test-contract-missing",
    ),
    pytest.param(("test", "-f", "EMPTY", CONTRACT), "no objects passed to test", id="test-empty"),
    pytest.param(
        ("test", "-f", EX, CONTRACT, "--junit", "NO_DIR"),
        "report.xml: cannot write: No such file or directory",
        id="test-junit-unwritable",
    ),
    pytest.param(("serve", "--dir", "MISSING"), "--dir: not a directory", id="serve-no-dir"),
    pytest.param(("serve", "--dir", EX, "--xds", "nohost"), "--xds: want HOST:PORT", id="xds"),
    pytest.param(
        ("routes", "--control-plane", "127.0.0.1:1"),
        "cannot reach the control plane at 127.0.0.1:1",
        id="routes-no-control-plane",
    ),
    pytest.param(
        ("routes", "explain", "--control-plane", "127.0.0.1:1", "--via", "svc/e/web:80", *URL),
        "cannot reach the control plane at 127.0.0.1:1",
        id="explain-no-control-plane",
    ),
]


@pytest.mark.parametrize(("argv", "says"), [*USAGE, *LOAD])
def test_a_usage_or_load_error_is_one_line_and_exit_code_2(
    argv: tuple[str, ...], says: str, files: dict[str, str]
) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = main(expand(argv, files), stdout=out, stderr=err)
    line = one_error_line(err.getvalue())
    assert code == 2, line
    assert says in line


PROXY = [
    pytest.param(("proxy",), "give exactly one of -f MANIFESTS and --xds", id="no-source"),
    pytest.param(("proxy", "-f", EX, "--workload", "web/"), "--workload: want KIND/NAME", id="wl"),
    pytest.param(("proxy", "-f", EX, "--xds", "127.0.0.1:1"), "exactly one of", id="two-sources"),
    pytest.param(("proxy", "-f", EX, "--workers", "0"), "--workers: must be >= 1", id="workers"),
    pytest.param(
        ("proxy", "--xds", "127.0.0.1:1", "--xds-protocol", "sow"),
        "argument --xds-protocol: invalid choice: 'sow'",
        id="xds-protocol",
    ),
    pytest.param(
        ("proxy", "-f", EX, "--xds-protocol", "sotw"), "--xds-protocol needs --xds", id="xds-pr-f"
    ),
    pytest.param(
        ("proxy", "-f", EX, "--outbound", "127.0.0.1:99999"),
        "--outbound: want HOST:PORT",
        id="port",
    ),
    pytest.param(
        ("proxy", "-f", EX, "--inbound", "127.0.0.1:0"),
        "--inbound HOST:PORT and --app HOST:PORT go together",
        id="inbound-without-app",
    ),
    pytest.param(
        ("proxy", "-f", EX, "--outbound", "127.0.0.1:0", "--refuse-unknown"),
        "--refuse-unknown needs --transparent",
        id="refuse-unknown-without-transparent",
    ),
    pytest.param(
        ("proxy", "-f", EX, "--gateway", "public", "--outbound", ":0", "--transparent"),
        "--transparent is a mesh proxy's",
        id="transparent-gateway",
    ),
    pytest.param(
        ("proxy", "-f", EX, "--gateway", "public", "--outbound", "127.0.0.1:0"),
        "want NAMESPACE/NAME[:PORT] for --gateway, got 'public'",
        id="gateway-form",
    ),
    pytest.param(
        ("proxy", "-f", EX, "--gateway", "emojivoto/public"),
        "--gateway serves the Gateway's listener on --outbound",
        id="gateway-without-outbound",
    ),
    pytest.param(
        ("proxy", "-f", "MISSING", "--outbound", "127.0.0.1:0"),
        "missing.yaml: no such file or directory",
        id="missing-file",
    ),
    pytest.param(
        ("proxy", "-f", "EMPTY", "--outbound", "127.0.0.1:0"),
        "no objects passed to proxy",
        id="empty",
    ),
    pytest.param(
        ("proxy", "-f", EX, "--gateway", "emojivoto/nope", "--outbound", "127.0.0.1:0"),
        "--gateway emojivoto/nope:80: the manifests have no listener of that Gateway on that port "
        "(gateways: emojivoto/public:443, emojivoto/public:80)",
        id="gateway-not-in-manifests",
    ),
]


@pytest.mark.parametrize(("argv", "says"), PROXY)
def test_mesh_proxy_refuses_a_bad_command_line_in_one_line_with_exit_code_2(
    argv: tuple[str, ...], says: str, files: dict[str, str]
) -> None:
    """Through `main` in this process (the next test runs a real `mesh proxy` process)."""
    out, err = io.StringIO(), io.StringIO()
    code = main(expand(argv, files), stdout=out, stderr=err)
    line = one_error_line(err.getvalue())
    assert code == 2, line
    assert says in line
    assert out.getvalue() == ""


def test_mesh_proxy_on_invalid_manifests_lists_them_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "r.yaml"
    bad.write_text(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoutes\nmetadata: {name: r}\n"
    )
    proc = subprocess.run(
        [str(MESH), "proxy", "-f", str(bad), "--outbound", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f'{bad}[0] kind: no matches for kind "HTTPRoutes"' in proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        "error: the manifests do not load cleanly; the proxy did not start"
    )


def test_findings_exit_1_and_clean_input_exits_0(tmp_path: Path) -> None:
    bad = tmp_path / "r.yaml"
    bad.write_text(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoutes\nmetadata: {name: r}\n"
    )
    assert main(["validate", "-f", str(bad)], stdout=io.StringIO(), stderr=io.StringIO()) == 1
    assert main(["validate", "-f", EX], stdout=io.StringIO(), stderr=io.StringIO()) == 0


@pytest.mark.parametrize("command", [[], ["validate"], ["routes", "explain"], ["tap"], ["demo"]])
def test_every_help_documents_the_exit_codes(command: list[str]) -> None:
    proc = subprocess.run(
        [str(MESH), *command, "--help"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0
    assert "exit codes (every command):\n  0  ok\n  1  findings" in proc.stdout
    assert "\n  2  usage or load errors" in proc.stdout


def test_tap_limit_is_spelled_out_and_n_is_the_namespace() -> None:
    help_text = subprocess.run(
        [str(MESH), "tap", "--help"], capture_output=True, text=True, timeout=30
    ).stdout
    assert "--limit N" in help_text and "-n NS, --namespace NS" in help_text
    assert build_parser().parse_args(["tap", "--admin", ":4191", "--limit", "3"]).limit == 3


@pytest.mark.parametrize(
    "argv",
    [
        ["proxy", "-n", "shop", "--xds", "127.0.0.1:1"],
        ["proxy", "--namespace", "shop", "--xds", "127.0.0.1:1"],
        ["bootstrap", "-n", "shop", "--xds", "127.0.0.1:1", "--workload", "deployment/web"],
        ["routes", "explain", "-f", EX, "-n", "shop", "--via", "svc/web", *URL],
    ],
)
def test_namespace_takes_kubectls_n(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).namespace == "shop"
