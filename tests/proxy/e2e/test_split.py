"""Weighted backends, invalid shares and the answers when nothing can serve."""

from __future__ import annotations

from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import bounded
from tests.proxy.e2e.manifests import split


@bounded(30)
async def test_a_90_10_split_lands_within_one_point_over_10000_requests(lab: Lab) -> None:
    v1, v2, v3 = await lab.backend("v1"), await lab.backend("v2"), await lab.backend("v3")
    mesh = await lab.mesh(
        {"web": [], "web-v1": [v1], "web-v2": [v2], "web-v3": [v3]},
        split({"web-v1": 90, "web-v2": 10, "web-v3": 0}),
    )
    n = 10_000
    got = await mesh.load("web", "/echo", n=n, workers=64)
    assert sum(c for (status, _), c in got.items() if status == 200) == n
    # Counted at the backends, not from the answers.
    assert v1.total + v2.total == n
    assert abs(v1.total / n - 0.90) <= 0.01, v1.total
    assert abs(v2.total / n - 0.10) <= 0.01, v2.total
    assert v3.total == 0


@bounded(15)
async def test_the_share_of_a_missing_service_answers_500_and_the_rest_is_unaffected(
    lab: Lab,
) -> None:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, split({"web-v1": 50, "ghost": 50}))
    n = 2000
    got = await mesh.load("web", "/echo", n=n)
    errors, ok = got[(500, "")], got[(200, "v1")]
    assert errors + ok == n, got
    assert abs(errors / n - 0.5) <= 0.05, errors
    assert v1.total == ok


@bounded(10)
async def test_all_zero_weights_answer_500_and_reach_no_backend(lab: Lab) -> None:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, split({"web-v1": 0}))
    for _ in range(20):
        status, _, _ = await mesh.get("web", "/echo")
        assert status == 500
    assert v1.total == 0


@bounded(10)
async def test_a_service_without_ready_endpoints_answers_503(lab: Lab) -> None:
    v1 = await lab.backend("v1")
    mesh = await lab.mesh(
        {"web": [], "web-v1": [v1], "empty": [v1]},
        split({"empty": 1}),
        unready=["empty"],
    )
    for _ in range(20):
        status, _, _ = await mesh.get("web", "/echo")
        assert status == 503
    assert v1.total == 0


@bounded(10)
async def test_a_request_no_route_matches_answers_404(lab: Lab) -> None:
    v1 = await lab.backend("v1")
    routes = split({"web-v1": 1}).replace("type: PathPrefix, value: /}", "type: Exact, value: /x}")
    mesh = await lab.mesh({"web": [], "web-v1": [v1]}, routes)
    assert (await mesh.get("web", "/x"))[0] == 200
    assert (await mesh.get("web", "/y"))[0] == 404
    assert (await mesh.get("unknown.elsewhere", "/x"))[0] == 404
    assert v1.total == 1
