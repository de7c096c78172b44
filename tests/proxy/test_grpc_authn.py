"""The JWT interceptor for Python gRPC servers (`grpc_authn.py`): a real grpc.aio server on
127.0.0.1 with a generic (protobuf-free) service, real signed tokens and an inline JWKS."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from turnout.proxy.grpc_authn import JwtInterceptor, SyncJwtInterceptor, claims, principal
from turnout.proxy.jwt_authn import Authenticator, JwtRule

ISSUER = "https://issuer.example"
KEY = ec.generate_private_key(ec.SECP256R1())
JWK = {
    **json.loads(jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key())),
    "kid": "k1",
    "alg": "ES256",
}


def token(**claims_: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "sub": "alice", "aud": "emoji", "exp": now + 60, **claims_}
    return jwt.encode(body, KEY, algorithm="ES256", headers={"kid": "k1"})


async def whoami(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return f"{principal()} team={claims().get('team')}".encode()


async def count(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    for i in range(3):
        yield f"{i} {principal()}".encode()


def identity(b: bytes) -> bytes:
    return b


HANDLERS = grpc.method_handlers_generic_handler(
    "demo.Who",
    {
        "Am": grpc.unary_unary_rpc_method_handler(whoami, identity, identity),
        "Count": grpc.unary_stream_rpc_method_handler(count, identity, identity),
    },
)


@pytest.fixture
async def channel(request: pytest.FixtureRequest) -> AsyncIterator[grpc.aio.Channel]:
    require, istio = request.param
    rule = JwtRule(issuer=ISSUER, audiences=("emoji",), jwks=json.dumps({"keys": [JWK]}))
    auth = Authenticator.of([rule], istio_statuses=istio)
    server = grpc.aio.server(interceptors=[JwtInterceptor(auth, require=require)])
    server.add_generic_rpc_handlers((HANDLERS,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            yield ch
    finally:
        await server.stop(0)
        await auth.close()


async def call(
    ch: grpc.aio.Channel, metadata: list[tuple[str, str]]
) -> tuple[grpc.StatusCode, str]:
    try:
        reply = await ch.unary_unary("/demo.Who/Am")(b"", metadata=metadata, timeout=5)
        return grpc.StatusCode.OK, reply.decode()
    except grpc.aio.AioRpcError as err:
        return err.code(), err.details() or ""


@pytest.mark.parametrize("channel", [(True, False)], indirect=True)
async def test_tokens_decide_the_call_and_the_handler_sees_the_principal(
    channel: grpc.aio.Channel,
) -> None:
    ok = await call(channel, [("authorization", f"Bearer {token(team='emoji')}")])
    assert ok == (grpc.StatusCode.OK, f"{ISSUER}/alice team=emoji")
    assert await call(channel, []) == (grpc.StatusCode.UNAUTHENTICATED, "Jwt is missing")
    expired = token(exp=int(time.time()) - 5)
    assert await call(channel, [("authorization", f"Bearer {expired}")]) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "Jwt is expired",
    )
    code, _ = await call(channel, [("authorization", f"Bearer {token(aud='other')}")])
    assert code == grpc.StatusCode.UNAUTHENTICATED
    stream = channel.unary_stream("/demo.Who/Count")(
        b"", metadata=[("authorization", f"Bearer {token(sub='bob')}")], timeout=5
    )
    assert [m.decode() async for m in stream] == [f"{i} {ISSUER}/bob" for i in range(3)]


@pytest.mark.parametrize("channel", [(False, True)], indirect=True)
async def test_optional_tokens_and_istio_statuses(channel: grpc.aio.Channel) -> None:
    assert await call(channel, []) == (grpc.StatusCode.OK, "None team=None")
    code, details = await call(channel, [("authorization", f"Bearer {token(aud='other')}")])
    assert (code, details) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "Audiences in Jwt are not allowed",
    )


def sync_whoami(request: bytes, context: grpc.ServicerContext) -> bytes:
    return f"{principal()} team={claims().get('team')}".encode()


def sync_count(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    for i in range(3):
        yield f"{i} {principal()}".encode()


def test_the_sync_interceptor_checks_tokens_on_a_synchronous_server() -> None:
    """`grpc.server` (what `xds=True` needs) with `SyncJwtInterceptor`: same statuses."""
    rule = JwtRule(issuer=ISSUER, audiences=("emoji",), jwks=json.dumps({"keys": [JWK]}))
    interceptor = SyncJwtInterceptor([rule], require=True)
    handlers = grpc.method_handlers_generic_handler(
        "demo.Who",
        {
            "Am": grpc.unary_unary_rpc_method_handler(sync_whoami, identity, identity),
            "Count": grpc.unary_stream_rpc_method_handler(sync_count, identity, identity),
        },
    )
    server = grpc.server(ThreadPoolExecutor(max_workers=4), interceptors=[interceptor])
    server.add_generic_rpc_handlers((handlers,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            am = ch.unary_unary("/demo.Who/Am")
            good = [("authorization", f"Bearer {token(team='a')}")]
            assert am(b"", metadata=good, timeout=5) == f"{ISSUER}/alice team=a".encode()
            replies = list(ch.unary_stream("/demo.Who/Count")(b"", metadata=good, timeout=5))
            assert replies == [f"{i} {ISSUER}/alice".encode() for i in range(3)]
            for metadata, code in (
                ([], grpc.StatusCode.UNAUTHENTICATED),
                ([("authorization", f"Bearer {token(exp=1)}")], grpc.StatusCode.UNAUTHENTICATED),
                ([("authorization", f"Bearer {token(aud='x')}")], grpc.StatusCode.UNAUTHENTICATED),
            ):
                with pytest.raises(grpc.RpcError) as err:
                    am(b"", metadata=metadata, timeout=5)
                assert err.value.code() == code, metadata
    finally:
        server.stop(0).wait(5)
        interceptor.close()
