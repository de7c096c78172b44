"""`turnout.viz.targets`: kubectl-style targets and the label matchers they become."""

from __future__ import annotations

import pytest

from turnout.viz.targets import Target, TargetError, parse_target


@pytest.mark.parametrize(
    ("text", "kind", "name"),
    [
        pytest.param("deploy/web", "deployment", "web", id="deploy-short"),
        pytest.param("deployment/web", "deployment", "web", id="deployment"),
        pytest.param("svc/web", "service", "web", id="svc"),
        pytest.param("service/web", "service", "web", id="service"),
        pytest.param("po/web-v1", "pod", "web-v1", id="pod"),
        pytest.param("sts/db", "statefulset", "db", id="sts"),
        pytest.param("ds/agent", "daemonset", "agent", id="ds"),
        pytest.param("deploy", "deployment", None, id="bare-kind-means-all"),
        pytest.param("Deployments", "deployment", None, id="plural-any-case"),
    ],
)
def test_kubectl_names_parse_to_one_kind(text: str, kind: str, name: str | None) -> None:
    t = parse_target(text, namespace="emojivoto")
    assert (t.kind, t.name, t.namespace) == (kind, name, "emojivoto")


def test_namespace_targets_and_all_namespaces_drop_the_namespace_matcher() -> None:
    assert parse_target("ns/emojivoto", namespace="default").matchers() == {
        "namespace": "emojivoto"
    }
    t = parse_target("deploy/web", namespace="default", all_namespaces=True)
    assert t.matchers() == {"deployment": "web"}
    assert parse_target("ns", namespace="x").matchers() == {}


def test_services_match_the_clients_outbound_destination_labels() -> None:
    t = parse_target("svc/web", namespace="emojivoto")
    assert t.promql(direction="outbound") == (
        '{direction="outbound",dst_namespace="emojivoto",dst_service="web"}'
    )
    assert t.matches({"dst_namespace": "emojivoto", "dst_service": "web", "pod": "x"})
    assert not t.matches({"namespace": "emojivoto", "deployment": "web"})
    assert str(t) == "svc/web" and str(Target(kind="pod", name=None, namespace=None)) == "po"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("foo/bar", "unknown target kind 'foo'"),
        ("deploy/Web_1", "not a valid name in target 'deploy/Web_1'"),
        ("deploy/", "not a valid name"),
    ],
)
def test_bad_targets_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(TargetError, match=message) as exc:
        parse_target(text, namespace="default")
    assert "\n" not in str(exc.value)
