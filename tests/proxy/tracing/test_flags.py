"""`mesh proxy --trace-otlp` and `--trace-sample`: what reaches `ProxyConfig.trace`, and
each mistake as one line naming the flag (exit 2)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from typing import Any

import pytest

from turnout.cli import data_plane
from turnout.cli.main import main
from turnout.proxy.process import ProxyConfig, TraceConfig


def run(*args: str) -> tuple[int, str]:
    err = io.StringIO()
    code = main(
        ["proxy", "--xds", "127.0.0.1:1", "--outbound", ":0", *args],
        stdout=io.StringIO(),
        stderr=err,
    )
    return code, err.getvalue()


@pytest.fixture
def configs(monkeypatch: pytest.MonkeyPatch) -> list[ProxyConfig]:
    """The `ProxyConfig` each `mesh proxy` run would start with (the proxy is not started)."""
    seen: list[ProxyConfig] = []

    async def started(config: ProxyConfig, *_: Any, **__: Any) -> None:
        seen.append(config)

    monkeypatch.setattr(data_plane, "run_proxy", started)
    return seen


def test_without_trace_otlp_tracing_is_off(configs: list[ProxyConfig]) -> None:
    assert run("--workload", "deployment/web")[0] == 0
    assert configs[0].trace is None


def test_trace_otlp_names_the_collector_the_rate_and_the_workload(
    configs: list[ProxyConfig],
) -> None:
    code, err = run(
        "--workload", "deployment/web", "--trace-otlp", ":4318", "--trace-sample", "0.25"
    )
    assert code == 0, err
    assert configs[0].trace == TraceConfig(
        otlp="127.0.0.1:4318", sample_per_million=250_000, service_name="web"
    )


def test_the_rate_defaults_to_every_trace(configs: list[ProxyConfig]) -> None:
    assert run("--trace-otlp", "collector:4318")[0] == 0
    trace = configs[0].trace
    assert trace is not None and trace.sample_per_million == 1_000_000
    assert trace.otlp == "collector:4318"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--trace-sample", "0.5"], "--trace-sample needs --trace-otlp"),
        (["--trace-otlp", ":4318", "--trace-sample", "1.5"], "--trace-sample"),
        (["--trace-otlp", ":4318", "--trace-sample", "half"], "--trace-sample"),
        (["--trace-otlp", "collector"], "--trace-otlp"),
    ],
)
def test_trace_flag_mistakes_are_one_line_and_exit_2(args: list[str], says: str) -> None:
    code, err = run(*args)
    assert code == 2
    assert says in err and err.count("\n") == 1, err


BUILD = """
import json, sys
from turnout.proxy.process import Address, ProxyConfig, TraceConfig
from turnout.proxy.runner import build_proxy
trace = TraceConfig(otlp="127.0.0.1:4318", service_name="web") if sys.argv[1] == "on" else None
proxy = build_proxy(ProxyConfig(outbound=Address(host="127.0.0.1", port=0), trace=trace))
print(json.dumps([sorted(m.split(".")[0] for m in sys.modules), proxy.tracer is not None]))
"""


@pytest.mark.parametrize(("trace", "loaded"), [("off", False), ("on", True)])
def test_a_built_proxy_loads_opentelemetry_only_with_tracing(trace: str, loaded: bool) -> None:
    """Past the command line too: building the proxy itself (`runner.build_proxy`) imports
    the SDK only for `ProxyConfig.trace`; "on" shows the check can see it."""
    got = subprocess.run(
        [sys.executable, "-c", BUILD, trace], capture_output=True, text=True, timeout=60, check=True
    )
    modules, has_tracer = json.loads(got.stdout)
    assert ("opentelemetry" in modules) is loaded
    assert has_tracer is loaded
