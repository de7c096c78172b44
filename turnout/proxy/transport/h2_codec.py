"""`Connection`: h2's `H2Connection` less two costs that are no protocol work, measured by
`bench.h2_path` (docs/http2.md, Cost):

- h2 formats every frame it receives for a trace log nobody reads (`repr(frame)`, evaluated
  before its no-op logger is called): ~3 us a HEADERS frame, and a hex dump of the whole
  payload of a DATA frame (~27 us for 16 KiB). `_receive_frame` is h2's own, without it.
- HPACK: an `Encoder` and a `Decoder` that give exactly the bytes and headers of `hpack`'s,
  but encode a field already in a table, and decode a one-byte indexed field, without
  hpack's per-field calls (integer codec, debug logging, `HeaderTuple` built twice). Every
  other field goes through hpack's own code.

```
Encoder.encode([(name, value), ...])          (bytes pairs, as our h2 writers give them)
  static table (name, value) hit ─► 0x80|index           one byte, no call
  dynamic table hit (deque.index) ─► 0x80|index          one byte, when index < 127
  else ─► hpack's `add` (literal, indexed name, table insert, eviction)
Decoder.decode(block)
  one byte 0x80|index, static ─► a HeaderTuple made once per index
  one byte 0x80|index, dynamic ─► HeaderTuple(table entry)
  else ─► hpack's `_decode_indexed` / `_decode_literal*` / table size update
  the header list size is counted and bounded as hpack does (`max_header_list_size`)
```

h2 reaches the codecs only as `conn.encoder` / `conn.decoder`; they are set in `__init__`,
before any header block. The `_receive_frame` copy is h2 4.x's (`h2>=4.1` in pyproject);
another major version gets h2's own (`_OWN_RECEIVE`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import h2
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import Event
from h2.exceptions import StreamClosedError, StreamIDTooLowError
from hpack import Decoder, Encoder, HeaderTuple
from hpack.exceptions import HPACKDecodingError, InvalidTableIndex, OversizedHeaderListError
from hpack.table import HeaderTable, table_entry_size
from hyperframe.frame import Frame, RstStreamFrame

_STATIC_MAPPING: dict[bytes, tuple[int, dict[bytes, int]]] = HeaderTable.STATIC_TABLE_MAPPING
_STATIC_LENGTH = HeaderTable.STATIC_TABLE_LENGTH
_DYNAMIC_BASE = _STATIC_LENGTH + 1
_INDEXED = [bytes((0x80 | i,)) for i in range(127)]
"""The one-byte indexed representation of each index below 127."""
_STATIC_FIELDS = [HeaderTuple(n, v) for n, v in HeaderTable.STATIC_TABLE]
_STATIC_SIZES = [table_entry_size(n, v) for n, v in HeaderTable.STATIC_TABLE]


class FastEncoder(Encoder):
    """`hpack.Encoder`, one byte per field already in a table (see the module docstring)."""

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        table = self.header_table
        if table.resized or type(headers) is not list:
            return super().encode(headers, huffman)
        block: list[bytes] = []
        dynamic = table.dynamic_entries
        for header in headers:
            if type(header) is not tuple or len(header) != 2:
                block.append(super().encode([header], huffman))  # a HeaderTuple, 3-tuple
                continue
            name, value = header
            if type(name) is not bytes or type(value) is not bytes:
                block.append(super().encode([header], huffman))
                continue
            hit = _STATIC_MAPPING.get(name)
            if hit is not None:
                index = hit[1].get(value)
                if index is not None:
                    block.append(_INDEXED[index])
                    continue
            if dynamic:
                try:
                    index = dynamic.index(header) + _DYNAMIC_BASE
                except ValueError:
                    pass
                else:
                    if index < 127:
                        block.append(_INDEXED[index])
                        continue
            block.append(self.add(header, False, huffman))
        return b"".join(block)


class FastDecoder(Decoder):
    """`hpack.Decoder`, one-byte indexed fields decoded inline (see the module docstring)."""

    def decode(self, data: bytes, raw: bool = False) -> Iterable[HeaderTuple]:
        if not raw:
            return super().decode(data, raw)
        view = memoryview(data)
        headers: list[HeaderTuple] = []
        size = 0
        at = 0
        end = len(data)
        table = self.header_table
        dynamic = table.dynamic_entries
        limit = self.max_header_list_size
        while at < end:
            byte = data[at]
            if byte & 0x80 and byte != 0xFF and byte != 0x80:
                index = byte & 0x7F
                if index <= _STATIC_LENGTH:
                    header = _STATIC_FIELDS[index - 1]
                    size += _STATIC_SIZES[index - 1]
                else:
                    slot = index - _DYNAMIC_BASE
                    if slot >= len(dynamic):
                        raise InvalidTableIndex(f"Invalid table index {index}")
                    name, value = dynamic[slot]  # (a literal's may be memoryview slices)
                    header = HeaderTuple(
                        name if type(name) is bytes else bytes(name),
                        value if type(value) is bytes else bytes(value),
                    )
                    size += table_entry_size(name, value)
                consumed = 1
            else:
                found, consumed = self._decode_other(byte, view[at:], bool(headers))
                if found is None:
                    at += consumed
                    continue
                header = found.__class__(bytes(found[0]), bytes(found[1]))  # (NeverIndexed)
                size += table_entry_size(header[0], header[1])
            headers.append(header)
            if size > limit:
                raise OversizedHeaderListError(
                    f"A header list larger than {limit} has been received"
                )
            at += consumed
        self._assert_valid_table_size()
        return headers

    def _decode_other(
        self, byte: int, data: memoryview, after_fields: bool
    ) -> tuple[HeaderTuple | None, int]:
        """hpack's own decoding of any field but a one-byte indexed one (its order of tests)."""
        if byte & 0x80:
            return self._decode_indexed(data)
        if byte & 0x40:
            return self._decode_literal_index(data)
        if byte & 0x20:
            if after_fields:
                raise HPACKDecodingError("Table size update not at the start of the block")
            return None, self._update_encoding_context(data)
        return self._decode_literal_no_index(data)


_OWN_RECEIVE = h2.__version__.startswith("4.")
"""The h2 whose `_receive_frame` ours copies (less the trace log's `repr`)."""


class Connection(H2Connection):
    """`H2Connection` with our codecs and without the per-frame `repr` (module docstring)."""

    def __init__(self, config: H2Configuration) -> None:
        super().__init__(config=config)
        decoder = FastDecoder(self.decoder.max_header_list_size)
        decoder.max_allowed_table_size = self.decoder.max_allowed_table_size
        self.encoder = FastEncoder()
        self.decoder = decoder

    if _OWN_RECEIVE:

        def _receive_frame(self, frame: Frame) -> list[Event]:
            """h2 4.x's `H2Connection._receive_frame`, less `repr(frame)` for its trace."""
            events: list[Event]
            try:
                frames, events = self._frame_dispatch_table[frame.__class__](frame)
            except StreamClosedError as e:
                if self._stream_is_closed_by_reset(e.stream_id):
                    f = RstStreamFrame(e.stream_id)
                    f.error_code = e.error_code
                    self._prepare_for_sending([f])
                    events = e._events
                else:
                    raise
            except StreamIDTooLowError as e:
                if self._stream_is_closed_by_reset(e.stream_id):
                    f = RstStreamFrame(e.stream_id)
                    f.error_code = ErrorCodes.STREAM_CLOSED
                    self._prepare_for_sending([f])
                    events = []
                elif self._stream_is_closed_by_end(e.stream_id):
                    raise StreamClosedError(e.stream_id) from e
                else:
                    raise
            else:
                self._prepare_for_sending(frames)
            return events
