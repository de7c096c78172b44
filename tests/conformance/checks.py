"""An answer against a case's expectations: the upstream suite's `ExpectedResponse` checks.

`check_answer` compares one answer (status, who answered, the request as the echo saw it,
response headers, redirect Location, certificate, elapsed time); `check_sample` compares the
shares a sample of answers fell into with the expected weights. Both return what differs,
one line each, so a report shows every mismatch of a case at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from tests.conformance.cases import Expect, Sample

if TYPE_CHECKING:
    from tests.conformance.runner import Answer


def _snippet(body: bytes) -> str:
    return body[:120].decode("latin-1").replace("\n", " ")


def check_answer(want: Expect, got: Answer, serials: Mapping[str, int]) -> list[str]:
    problems: list[str] = []
    status = want.status
    if status is None and want.redirect is not None and "status" in want.redirect:
        status = int(cast(int, want.redirect["status"]))
    if status is not None and got.status != status:
        problems.append(f"status {got.status}, want {status} (body: {_snippet(got.body)!r})")
        return problems
    problems += _check_backend(want, got)
    for name, value in want.response_headers.items():
        have = ",".join(got.headers.getall(name, []))
        if have != value:
            problems.append(f"response header {name}: {have!r}, want {value!r}")
    for name in want.absent_response_headers:
        if name in got.headers:
            problems.append(f"response header {name} present ({got.headers[name]!r}), want absent")
    if want.redirect is not None and "location" in want.redirect:
        location = got.headers.get("location")
        if location != want.redirect["location"]:
            problems.append(f"Location {location!r}, want {want.redirect['location']!r}")
    if want.certificate is not None and got.serial != serials.get(want.certificate):
        problems.append(f"the handshake did not present {want.certificate}'s certificate")
    if want.max_ms is not None and got.ms > want.max_ms:
        problems.append(f"answered after {got.ms}ms, want at most {want.max_ms}ms")
    if want.min_ms is not None and got.ms < want.min_ms:
        problems.append(f"answered after {got.ms}ms, want at least {want.min_ms}ms")
    return problems


def _check_backend(want: Expect, got: Answer) -> list[str]:
    needs_echo = (
        want.backend
        or want.path
        or want.host
        or want.request_headers
        or want.absent_request_headers
    )
    if not needs_echo:
        return []
    if got.echo is None:
        return [f"no echo backend answered (status {got.status}: {_snippet(got.body)!r})"]
    return check_echo(want, got.echo)


def check_echo(want: Expect, echo: Mapping[str, object]) -> list[str]:
    """The request as an echo backend saw it (who, path, Host, headers) against `want`."""
    problems = []
    who = f"{echo['namespace']}/{echo['service']}"
    if want.backend is not None and who != want.backend:
        problems.append(f"answered by {who}, want {want.backend}")
    if want.path is not None and echo["path"] != want.path:
        problems.append(f"backend saw path {echo['path']!r}, want {want.path!r}")
    if want.host is not None and echo["host"] != want.host:
        problems.append(f"backend saw Host {echo['host']!r}, want {want.host!r}")
    headers = cast(Mapping[str, list[str]], echo["headers"])
    for name, value in want.request_headers.items():
        have = ",".join(headers.get(name.lower(), []))
        if have != value:
            problems.append(f"backend saw {name}: {have!r}, want {value!r}")
    for name in want.absent_request_headers:
        if name.lower() in headers:
            problems.append(f"backend saw {name}: {headers[name.lower()]!r}, want it absent")
    return problems


def check_sample(want: Sample, counts: Mapping[str, int], copies: Mapping[str, int]) -> list[str]:
    """Each share within `tolerance` points of its weight; weight 0 and unnamed: no answer;
    each mirror's copies within `tolerance` points of its percent of the requests."""
    total = sum(want.weights.values())
    problems = []
    for who, n in sorted(counts.items()):
        if want.weights.get(who, 0) == 0:
            problems.append(f"sample: {n} of {want.requests} answered by {who}, want none")
    for who, weight in sorted(want.weights.items()):
        if weight == 0:
            continue
        share = 100 * counts.get(who, 0) / want.requests
        expected = 100 * weight / total
        if abs(share - expected) > want.tolerance:
            problems.append(
                f"sample: {who} took {share:.1f}% of {want.requests}, want {expected:.1f}%"
                f" ±{want.tolerance}"
            )
    for who, percent in sorted(want.mirrors.items()):
        share = 100 * copies.get(who, 0) / want.requests
        if abs(share - percent) > want.tolerance:
            problems.append(
                f"sample: mirror {who} got copies of {share:.1f}% of {want.requests} requests,"
                f" want {percent}% ±{want.tolerance}"
            )
    return problems
