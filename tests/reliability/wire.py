"""HTTP/1 on the wire for the attack harness: messages framed by hand (requests at the
recorder, responses at the client), the backend's `Reply`, and one client `exchange`.

```
parse_message(buf, response=) -> (Message, bytes used)    Incomplete: read more
exchange(port, raw, want=, until_close=) -> Exchange       answers, then "close"/"timeout"
```

The framing is the plain one (Content-Length, chunked, or to the close for a response); the
harness never needs to be lenient, since it parses only what the proxy (or a reply of our
own) sends. Not here: the recorder, the proxy process, the cases (`attacks.py`).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass

HOST = "web"
"""The Service every attack is addressed to (Host header)."""
SOCKET_TIMEOUT_S = 5.0
"""A read that waits longer than this ends the exchange ("timeout")."""
MAX_HEAD = 32 * 1024 * 1024
"""The most a response or request head may hold before the harness gives up on it."""


# --------------------------------------------------------------------------- messages


@dataclass
class Message:
    """One HTTP/1 message head and body, as parsed by the harness (names lower-cased)."""

    start: str
    """The request line or the status line."""
    headers: list[tuple[str, str]]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    @property
    def status(self) -> int:
        return int(self.start.split(" ", 2)[1])


@dataclass
class Recorded(Message):
    """A request that reached the backend, and on which backend connection (0, 1, ...)."""

    conn: int = 0

    @property
    def method(self) -> str:
        return self.start.split(" ", 1)[0]

    @property
    def target(self) -> str:
        return self.start.split(" ")[1]

    def summary(self) -> str:
        """``METHOD target [route]`` plus the body, as the table and the cases spell it."""
        text = f"{self.method} {self.target} [{self.header('x-route') or '-'}]"
        return f"{text} {self.body!r}" if self.body else text


class Incomplete(Exception):
    """The buffer does not hold a whole message yet."""


class Malformed(Exception):
    """The bytes are not an HTTP/1 message the harness can frame."""


def _split_head(buf: bytes) -> tuple[str, list[tuple[str, str]], int]:
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEAD:
            raise Malformed("head too long")
        raise Incomplete
    lines = buf[:end].decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise Malformed(f"header line {line[:40]!r}")
        headers.append((name.strip().lower(), value.strip()))
    return lines[0], headers, end + 4


def _dechunk(buf: bytes, at: int) -> tuple[bytes, int]:
    """A chunked body starting at `at`: (the data, the offset after the last CRLF)."""
    out = bytearray()
    while True:
        eol = buf.find(b"\r\n", at)
        if eol < 0:
            raise Incomplete
        size_text = buf[at:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise Malformed(f"chunk size {size_text[:20]!r}") from None
        at = eol + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", at - 2)  # trailers, if any, then the blank line
            if end < 0:
                raise Incomplete
            return bytes(out), end + 4
        if len(buf) < at + size + 2:
            raise Incomplete
        out += buf[at : at + size]
        at += size + 2


def parse_message(buf: bytes, *, response: bool, eof: bool = False) -> tuple[Message, int]:
    """The first message in `buf` and how many bytes it took. A response without a length
    runs to the end of the connection (`eof` says the connection has ended)."""
    start, headers, at = _split_head(buf)
    msg = Message(start, headers)
    te = msg.header("transfer-encoding")
    length = msg.header("content-length")
    no_body = response and (msg.status < 200 or msg.status in (204, 304))
    if no_body:
        return msg, at
    if te is not None and te.lower().endswith("chunked"):
        msg.body, end = _dechunk(buf, at)
        return msg, end
    if length is not None:
        n = int(length)
        if len(buf) < at + n:
            raise Incomplete
        msg.body = buf[at : at + n]
        return msg, at + n
    if response:
        if not eof:
            raise Incomplete
        msg.body = buf[at:]
        return msg, len(buf)
    return msg, at


# --------------------------------------------------------------------------- the backend


@dataclass(frozen=True)
class Reply:
    """How the backend answers one request: `parts` written one after the other, `gap_s`
    apart; no parts: never answer (the connection is held until the proxy closes it).
    `close`: close the connection after the last part."""

    parts: tuple[bytes, ...] = ()
    gap_s: float = 0.0
    close: bool = False


Answer = Callable[[Recorded], Reply]


def response(body: bytes, *, status: str = "200 OK", headers: str = "") -> bytes:
    """A complete response with a Content-Length (`headers`: extra lines, each ending CRLF)."""
    return f"HTTP/1.1 {status}\r\n{headers}content-length: {len(body)}\r\n\r\n".encode() + body


def echo(rec: Recorded) -> Reply:
    """The default answer: 200 naming the request (``GET /x``), so crossed answers show."""
    return Reply((response(f"{rec.method} {rec.target}".encode()),))


def fixed(*parts: bytes, gap_s: float = 0.0, close: bool = False) -> Answer:
    """Always the same raw bytes."""
    return lambda rec: Reply(parts, gap_s=gap_s, close=close)


HOLD: Answer = fixed()
"""Never answer."""
# --------------------------------------------------------------------------- the client side


@dataclass
class Exchange:
    """What a client got back on one connection: the answers, then how it ended ("close":
    the proxy closed it, "timeout": nothing more came, "open": not waited for)."""

    answers: list[Message]
    end: str

    def spelled(self) -> list[str]:
        """``["400", "close"]``: the statuses, then "close" or "timeout" if it ended so."""
        out = [str(m.status) for m in self.answers]
        return out + ([self.end] if self.end != "open" else [])


class Client:
    """One client connection to 127.0.0.1:`port`; `read` parses answers as they come."""

    def __init__(self, port: int, *, timeout_s: float = SOCKET_TIMEOUT_S) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.buf = b""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, raw: bytes) -> None:
        with contextlib.suppress(OSError):  # the proxy may answer and close mid-write
            self.sock.sendall(raw)

    def read(self, want: int, *, until_close: bool = False) -> Exchange:
        """`want` responses (1xx interim ones skipped; a 101 counts), then, with
        `until_close`, a wait (1 s at most) for the proxy to close."""
        answers: list[Message] = []
        while True:
            if len(answers) >= want:
                if not until_close:
                    return Exchange(answers, "open")
                self.sock.settimeout(1.0)
            try:
                msg, used = parse_message(self.buf, response=True)
            except Incomplete:
                try:
                    data = self.sock.recv(1 << 20)
                except TimeoutError:
                    return Exchange(answers, "timeout")
                except OSError:  # reset: the proxy closed with our bytes unread
                    data = b""
                if not data:
                    with contextlib.suppress(Incomplete, Malformed):
                        answers.append(parse_message(self.buf, response=True, eof=True)[0])
                    return Exchange(answers, "close")
                self.buf += data
                continue
            self.buf = self.buf[used:]
            if msg.status >= 200 or msg.status == 101:
                answers.append(msg)


def exchange(
    port: int, raw: bytes, *, want: int, until_close: bool, timeout_s: float = SOCKET_TIMEOUT_S
) -> Exchange:
    """Write `raw` on a fresh connection, read `want` answers (`Client.read`), close."""
    with Client(port, timeout_s=timeout_s) as client:
        client.send(raw)
        return client.read(want, until_close=until_close)


def get(path: str, *, host: str = HOST, headers: str = "") -> bytes:
    """A GET's bytes (`headers`: extra lines, each ending CRLF)."""
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n".encode()
