"""`json_patch(before, after)`: RFC 6902 operations that an independent applier turns back
into `after`; and the admission decisions that need no server."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.cluster.jsonpatch_apply import apply_patch
from turnout.cluster import names
from turnout.cluster.inject.admission import review_response
from turnout.cluster.inject.patch import json_patch
from turnout.cluster.inject.settings import InjectSettings


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param({"a": 1}, {"a": 1, "b/c~d": 2}, id="new-key-escaped"),
        pytest.param({"a": 1, "x~/y": 2}, {"a": 1}, id="gone-key-escaped"),
        pytest.param({"l": [1, 2, 3]}, {"l": [0, 1, 9, 2, 3, 4]}, id="insertions"),
        pytest.param({"l": [1, 2, 3]}, {"l": [3, 2]}, id="other-list-change"),
        pytest.param({"a": {"b": [{"n": 1}]}}, {"a": {"b": [{"n": 2}]}}, id="nested-replace"),
        pytest.param({"a": True}, {"a": 1}, id="bool-is-not-int"),
        pytest.param({"a": 1}, {"a": 1}, id="nothing"),
    ],
)
def test_the_patch_applied_gives_the_after(before: Any, after: Any) -> None:
    ops = json_patch(before, after)
    assert apply_patch(before, ops) == after
    assert type(apply_patch(before, ops).get("a")) is type(after.get("a"))


def test_insertions_are_adds_at_their_final_index() -> None:
    ops = json_patch({"l": ["b"]}, {"l": ["a", "b", "c"]})
    assert ops == [
        {"op": "add", "path": "/l/0", "value": "a"},
        {"op": "add", "path": "/l/2", "value": "c"},
    ]
    assert json_patch({"m": {}}, {"m": {"turnout.dev/x": "1"}}) == [
        {"op": "add", "path": "/m/turnout.dev~1x", "value": "1"}
    ]


def review(pod: dict[str, Any], namespace_annotations: dict[str, str] | None) -> list[Any]:
    request = {
        "uid": "u1",
        "kind": {"kind": "Pod"},
        "operation": "CREATE",
        "namespace": "shop",
        "object": pod,
    }
    answer = review_response(
        {"apiVersion": "admission.k8s.io/v1", "request": request},
        settings=InjectSettings(),
        namespace_annotations=namespace_annotations,
    )
    patch = answer["response"].get("patch")
    return [] if patch is None else json.loads(base64.b64decode(patch))


def test_a_pod_inherits_its_namespaces_config_annotations_and_overrides_them() -> None:
    pod: dict[str, Any] = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}}
    ns = {names.INJECT_ANNOTATION: "enabled", names.OPAQUE_PORTS: "3306", "team": "x"}
    injected = apply_patch(pod, review(pod, ns))
    args = injected["spec"]["containers"][0]["args"]
    assert args[args.index("--opaque-ports") + 1] == "3306"
    assert injected["metadata"]["annotations"] == {
        "kubectl.kubernetes.io/default-container": "a",  # kubectl logs: the app, not the proxy
        names.INJECTED_ANNOTATION: "0.1.0",
    }
    pod["metadata"]["annotations"] = {names.OPAQUE_PORTS: "5432"}
    args = apply_patch(pod, review(pod, ns))["spec"]["containers"][0]["args"]
    assert args[args.index("--opaque-ports") + 1] == "5432"
