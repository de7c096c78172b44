"""The proxy's own answers (`answers.py`): which cause each error gets, and that each answer's
headers and body are built once, not per request."""

from __future__ import annotations

import errno

import pytest

from turnout.proxy import answers
from turnout.proxy.actions import DirectResponse, Fault, InvalidBackend
from turnout.proxy.answers import L5D_PROXY_ERROR, Answer, for_error
from turnout.proxy.errors import (
    ClientError,
    UpstreamConnectError,
    UpstreamConnectTimeout,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)

EP = ("10.0.0.7", 8080)


def connect_error(cause: BaseException | None) -> UpstreamConnectError:
    err = UpstreamConnectError(EP, "connect failed")
    err.__cause__ = cause
    return err


def header(answer: Answer) -> str:
    return dict(answer.headers)[L5D_PROXY_ERROR]


@pytest.mark.parametrize(
    ("error", "inbound", "request_timeout", "status", "cause"),
    [
        pytest.param(
            connect_error(ConnectionRefusedError(errno.ECONNREFUSED, "refused")),
            False, False, 503, "connection refused", id="refused",
        ),
        pytest.param(
            connect_error(ConnectionRefusedError(errno.ECONNREFUSED, "refused")),
            True, False, 502, "connection refused", id="inbound-refused-is-502",
        ),
        pytest.param(
            connect_error(OSError(errno.EHOSTUNREACH, "no route to host")),
            False, False, 503, "connect failed", id="unreachable",
        ),
        pytest.param(
            connect_error(ConnectionResetError(errno.ECONNRESET, "reset")),
            False, False, 503, "connection closed before response", id="reset",
        ),
        pytest.param(
            connect_error(None), True, False, 502, "connection closed before response",
            id="inbound-closed",
        ),
        pytest.param(
            UpstreamConnectTimeout(EP, "connect timed out"), False, True, 504, "connect timeout",
            id="connect-timeout",
        ),
        pytest.param(
            UpstreamTimeout(EP, "no response"), False, True, 504, "request timeout",
            id="request-deadline",
        ),
        pytest.param(
            UpstreamTimeout(EP, "no response"), False, False, 504, "backend request timeout",
            id="per-try-timeout",
        ),
        pytest.param(
            UpstreamProtocolError(EP, "malformed response"), False, False, 502,
            "upstream protocol error", id="protocol",
        ),
        pytest.param(
            UpstreamError(EP, "other"), False, False, 502, "upstream protocol error",
            id="any-other-upstream-error",
        ),
        pytest.param(
            ClientError(400, "malformed request body: x"), False, False, 400,
            "malformed request body", id="client-body",
        ),
        pytest.param(
            ClientError(408, "request body timed out"), False, False, 408,
            "request body timeout", id="client-timeout",
        ),
    ],
)  # fmt: skip
def test_each_error_gets_its_status_and_cause(
    error: BaseException, inbound: bool, request_timeout: bool, status: int, cause: str
) -> None:
    got = for_error(error, inbound=inbound, request_timeout=request_timeout)
    assert (got.status, got.cause, header(got)) == (status, cause, cause)
    assert got.body == f"{cause}\n".encode()
    # one object per cause: nothing is built for the request
    assert for_error(error, inbound=inbound, request_timeout=request_timeout) is got


def test_every_constant_answer_names_its_cause_in_header_and_body() -> None:
    found = [v for v in vars(answers).values() if isinstance(v, Answer)]
    assert len(found) >= 8
    for a in found:
        assert header(a) == a.cause and a.body.startswith(a.cause.encode()), a
        assert a.body.endswith(b"\n") and dict(a.headers)["content-type"].startswith("text/plain")


def test_an_invalid_backend_answers_with_its_reason_built_with_the_table() -> None:
    b = InvalidBackend(status=500, reason="BackendNotFound", message="Service shop/ghost")
    assert (b.answer.status, header(b.answer)) == (500, "invalid backend")
    assert b.answer.body == b"invalid backend: BackendNotFound: Service shop/ghost\n"
    # equal backends stay equal (the answer is derived, not compared)
    assert b == InvalidBackend(status=500, reason="BackendNotFound", message="Service shop/ghost")


def test_direct_responses_name_no_backends_or_the_filter_and_keep_a_given_cause() -> None:
    assert header(DirectResponse(status=500).answer) == "no backends"
    bad = DirectResponse(status=500, body="FaultInjection shop/f not found; requests get 500")
    assert header(bad.answer) == "invalid filter"
    assert bad.answer.body == b"invalid filter: FaultInjection shop/f not found; requests get 500\n"
    assert header(DirectResponse(status=404, cause="no route").answer) == "no route"


def test_a_grpc_abort_is_a_trailers_only_200_with_the_cause() -> None:
    fault = Fault(abort_grpc_status=14, abort_per_million=1_000_000)
    assert fault.abort is not None
    headers = dict(fault.abort.headers)
    assert (fault.abort.status, fault.abort.body, fault.abort.grpc_status) == (200, b"", 14)
    assert headers["grpc-status"] == "14" and headers[L5D_PROXY_ERROR] == "fault injected"
    assert Fault(delay_ms=5, delay_per_million=1).abort is None


def test_a_cause_is_made_a_valid_header_value() -> None:
    a = Answer(500, "bad\r\nthing é")
    assert header(a) == "bad??thing ?"
