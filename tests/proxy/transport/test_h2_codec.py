"""`h2_codec`: the fast HPACK encoder and decoder give exactly hpack's bytes and headers,
over blocks that repeat, vary, evict the dynamic table, resize it and carry sensitive
fields; and a frame `repr` is no longer made per received frame."""

from __future__ import annotations

import random

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from hpack import Decoder, Encoder, HeaderTuple, NeverIndexedHeaderTuple
from hpack.exceptions import InvalidTableIndex, OversizedHeaderListError
from hyperframe.frame import Frame

from turnout.proxy.transport.h2_codec import Connection, FastDecoder, FastEncoder


def _blocks(seed: int) -> list[list[tuple[bytes, bytes]]]:
    rnd = random.Random(seed)
    names = [b":status", b"content-type", b"date", b"server", b"x-id", b"grpc-status", b"cookie"]
    values = [b"200", b"404", b"text/plain", b"0", b"nginx", b"Tue, 24 Nov 2026 08:00:00 GMT"]
    blocks = []
    for _ in range(300):
        block = [(rnd.choice(names), rnd.choice(values)) for _ in range(rnd.randint(1, 8))]
        if rnd.random() < 0.3:
            block.append((b"x-big", b"v" * rnd.randint(1, 3000)))  # evicts the table
        blocks.append(block)
    return blocks


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_encoder_gives_hpacks_bytes(seed: int) -> None:
    ours, theirs = FastEncoder(), Encoder()
    for i, block in enumerate(_blocks(seed)):
        if i == 100:
            ours.header_table_size = theirs.header_table_size = 256
        mixed: list[object] = list(block)
        if i % 7 == 0:
            mixed.append(NeverIndexedHeaderTuple(b"authorization", b"secret"))
            mixed.append((b"x-three", b"v", True))
        assert ours.encode(mixed) == theirs.encode(mixed)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [4, 5])
def test_the_decoder_gives_hpacks_headers(seed: int) -> None:
    encoder = Encoder()
    ours, theirs = FastDecoder(), Decoder()
    for i, block in enumerate(_blocks(seed)):
        if i == 50:
            encoder.header_table_size = 512
        data = encoder.encode(block, huffman=i % 2 == 0)  # unhuffmaned: memoryview slices
        got, want = ours.decode(data, raw=True), theirs.decode(data, raw=True)
        assert got == want == [HeaderTuple(n, v) for n, v in block]
        assert all(type(h) is HeaderTuple for h in got)
        assert all(type(n) is bytes and type(v) is bytes for n, v in got)
        assert ours.header_table.dynamic_entries == theirs.header_table.dynamic_entries


def test_a_never_indexed_field_stays_never_indexed() -> None:
    data = Encoder().encode([NeverIndexedHeaderTuple(b"authorization", b"secret")])
    (got,) = FastDecoder().decode(data, raw=True)
    assert type(got) is NeverIndexedHeaderTuple and got == (b"authorization", b"secret")


def test_the_decoder_keeps_hpacks_refusals() -> None:
    with pytest.raises(InvalidTableIndex):
        FastDecoder().decode(bytes((0x80 | 70,)), raw=True)  # an empty dynamic slot
    small = FastDecoder(max_header_list_size=100)
    with pytest.raises(OversizedHeaderListError):
        small.decode(bytes((0x80 | 2,)) * 10, raw=True)  # ":method GET" ten times


def test_no_frame_is_formatted_for_the_trace_log(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Frame) -> str:
        raise AssertionError("repr(frame) made for h2's trace log")

    monkeypatch.setattr(Frame, "__repr__", refuse)
    config = H2Configuration(client_side=True, header_encoding=None)
    client, server = H2Connection(config), Connection(H2Configuration(client_side=False))
    client.initiate_connection()
    client.send_headers(
        1, [(b":method", b"POST"), (b":path", b"/"), (b":scheme", b"http"), (b":authority", b"a")]
    )
    client.send_data(1, b"x" * 1000, end_stream=True)
    server.initiate_connection()
    events = server.receive_data(client.data_to_send())
    assert [type(e).__name__ for e in events][-2:] == ["DataReceived", "StreamEnded"]
