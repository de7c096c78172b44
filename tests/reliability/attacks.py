"""The attack harness: raw bytes into a real proxy process, a recording backend behind it.

```
exchange(raw) ──TCP──> `mesh proxy -f table.yaml` ───────────────TCP──> Recorder (thread)
  answers parsed          outbound 127.0.0.1:0, admin 127.0.0.1:0        every request kept:
  (status, headers,       routes: /admin -> web-admin  (x-route: admin)   request line, headers,
   body) or "close"               /slow  -> web-main   (x-route: slow,    body bytes; answers
                                            request timeout 300ms)        with the case's Reply
                                  /      -> web-main   (x-route: main)    (any raw bytes, or none)
```

A `Case` says what to send, how the backend answers (`Answer`), what the proxy must answer
and which requests must reach the backend (`Recorded.summary`: ``GET /admin [admin]``,
with the body when there is one). `Lab.run(case)` plays it and returns an `Outcome`; the
test module compares and appends a `Result` to `RESULTS`, which `conftest.py` prints as a
table at the end of the run. After each case, a plain GET must still work. Cases that
need more than one exchange (concurrent clients, memory, file descriptors, metrics) carry
their own `scenario`.

Everything listens on 127.0.0.1, every socket has a timeout, and the recorder's threads
end with the proxy's connections (or at `stop`). Not here: the cases (`attack_cases.py`,
`attack_backends.py`).
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.reliability.wire import (
    SOCKET_TIMEOUT_S,
    Answer,
    Exchange,
    Incomplete,
    Malformed,
    Message,
    Recorded,
    echo,
    exchange,
    get,
    parse_message,
)


class Recorder:
    """A raw-socket backend on 127.0.0.1:0 (one thread per connection) that records every
    request and answers with `answer`. `reset` forgets the record and closes every
    connection, so each case starts with the proxy's upstream pool empty."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self.answer: Answer = echo
        self.seen: list[Recorded] = []
        self.accepted = 0
        self.replied = 0
        """Replies sent in full (every part written)."""
        self.unreadable: list[str] = []
        """Requests the recorder could not frame (the proxy sent something malformed)."""
        self._conns: set[socket.socket] = set()
        self.open: set[int] = set()
        """The backend connections (by number) the proxy has not closed yet."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="recorder", daemon=True)

    def start(self) -> Recorder:
        self._thread.start()
        return self

    def reset(self, answer: Answer = echo) -> None:
        with self._lock:
            self.seen, self.unreadable, self.answer = [], [], answer
            self.replied = 0
            conns = list(self._conns)
        for conn in conns:  # wakes its thread, which closes it
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        self.reset()
        until(lambda: not self._conns, timeout_s=5)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(SOCKET_TIMEOUT_S * 4)
            with self._lock:
                self._conns.add(conn)
                n, self.accepted = self.accepted, self.accepted + 1
                self.open.add(n)
            threading.Thread(target=self._serve, args=(conn, n), daemon=True).start()

    def _serve(self, conn: socket.socket, n: int) -> None:
        buf = b""
        try:
            while not self._stop.is_set():
                try:
                    msg, used = parse_message(buf, response=False)
                except Incomplete:
                    data = conn.recv(1 << 16)
                    if not data:
                        return
                    buf += data
                    continue
                buf = buf[used:]
                rec = Recorded(msg.start, msg.headers, msg.body, conn=n)
                with self._lock:
                    self.seen.append(rec)
                    answer = self.answer
                reply = answer(rec)
                if not reply.parts:
                    while conn.recv(1 << 16):
                        pass  # held: until the proxy gives up
                    return
                for i, part in enumerate(reply.parts):
                    if i:
                        time.sleep(reply.gap_s)
                    conn.sendall(part)
                with self._lock:
                    self.replied += 1
                if reply.close:
                    return
        except Malformed as exc:
            with self._lock:
                self.unreadable.append(str(exc))
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(conn)
                self.open.discard(n)
            _close(conn)


def _close(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
    conn.close()


# --------------------------------------------------------------------------- the proxy


def table_manifest(backend_port: int) -> str:
    """Service `web` (routes only), `web-main` and `web-admin` on the recorder, and the
    route table the attacks aim at."""
    docs = [_service("web", None), _service("web-main", backend_port)]
    docs.append(_service("web-admin", backend_port))
    docs.append(
        """apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /admin}}]
    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-route, value: admin}]}}]
    backendRefs: [{name: web-admin, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /slow}}]
    timeouts: {request: 300ms}
    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-route, value: slow}]}}]
    backendRefs: [{name: web-main, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /}}]
    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-route, value: main}]}}]
    backendRefs: [{name: web-main, port: 80}]
"""
    )
    return "---\n".join(docs)


def _service(name: str, port: int | None) -> str:
    text = (
        f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\n"
        "spec: {ports: [{name: http, port: 80}]}\n"
    )
    if port is None:
        return text
    return text + (
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
        f"metadata: {{name: {name}-1, namespace: shop,"
        f" labels: {{kubernetes.io/service-name: {name}}}}}\n"
        f"addressType: IPv4\nports: [{{name: http, port: {port}}}]\n"
        "endpoints: [{addresses: [127.0.0.1], conditions: {ready: true}}]\n"
    )


READ_TIMEOUT = "1s"
"""The proxy's `--upstream-read-timeout` (60 s by default): a backend that never answers a
route without a timeout is answered 504 within the set's bounds."""

_LISTENING = re.compile(r"outbound 127\.0\.0\.1:(\d+).* admin 127\.0\.0\.1:(\d+)")


@dataclass
class ProxyProcess:
    """`mesh proxy -f MANIFEST` on ports the kernel picks (read back from the
    line it prints once listening); stopped with SIGTERM, killed if it lingers."""

    manifest: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    outbound: int = 0
    admin: int = 0

    def start(self, *, timeout_s: float = 20.0) -> ProxyProcess:
        argv = [sys.executable, "-m", "turnout", "proxy", "-f", str(self.manifest)]
        argv += ["--namespace", "shop", "--workload", "deployment/attacker"]
        argv += ["--outbound", "127.0.0.1:0", "--admin", "127.0.0.1:0"]
        argv += ["--upstream-read-timeout", READ_TIMEOUT]
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        line = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise TimeoutError(f"the proxy printed no address in {timeout_s}s: {self.log}")
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    raise RuntimeError(f"the proxy exited: {self.log.read_text()[-2000:]}")
                line += chunk
        m = _LISTENING.search(line.decode())
        assert m, line
        self.outbound, self.admin = int(m.group(1)), int(m.group(2))
        until(lambda: self.admin_get("/ready")[0] == 200, timeout_s=deadline - time.monotonic())
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        assert proc.stdout is not None
        proc.stdout.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def fds(self) -> int:
        """Open file descriptors of the proxy process."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_mb(self) -> float:
        """Resident memory of the proxy process (VmRSS), in MiB."""
        text = Path(f"/proc/{self.pid}/status").read_text()
        m = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
        assert m, text
        return int(m.group(1)) / 1024

    def admin_get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except OSError as exc:  # refused while starting, or an HTTP error status
            return getattr(exc, "code", 0), ""


def until(check: Callable[[], bool], *, timeout_s: float, every_s: float = 0.02) -> None:
    """Poll `check` until it holds; TimeoutError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout_s:.1f}s")
        time.sleep(every_s)


# --------------------------------------------------------------------------- cases


@dataclass
class Outcome:
    """What a case produced: the proxy's answers (`Exchange.spelled`), the summaries of
    what reached the backend, problems a scenario found itself, and measured figures."""

    answers: list[str]
    reached: list[str]
    problems: list[str] = field(default_factory=list)
    figures: str = ""
    responses: list[Message] = field(default_factory=list)


@dataclass(frozen=True)
class Case:
    """One attack: bytes to send (or a `scenario`), the backend's `answer`, and the expected
    `answers` (statuses in order, "close" when the proxy must then close) and `reached`
    (`Recorded.summary` of each request the backend must get, in order; None: not
    checked). `absent`: header names that must appear neither at the backend nor in an
    answer. `nginx`: what nginx 1.22 answers the same bytes. `xfail`: why a known defect is
    not fixed yet (the case is then a strict xfail)."""

    id: str
    group: str
    send: bytes = b""
    answers: tuple[str, ...] = ("200",)
    reached: tuple[str, ...] | None = ()
    absent: tuple[str, ...] = ()
    answer: Answer = echo
    scenario: Callable[[Lab, Case], Outcome] | None = None
    label: str = ""
    """What the table shows as the input (default: the bytes sent, abbreviated)."""
    nginx: str = ""
    xfail: str = ""
    wait_s: float = SOCKET_TIMEOUT_S
    """How long the client waits for the next byte of an answer."""

    @property
    def shown(self) -> str:
        return self.label or abbreviate(self.send)


def abbreviate(data: bytes, width: int = 44) -> str:
    text = repr(data)[2:-1].replace("\\r\\n", "⏎")
    return text if len(text) <= width else text[: width - 1] + "…"


class Lab:
    """The recorder and one proxy process for the whole attack set."""

    def __init__(self, recorder: Recorder, proxy: ProxyProcess) -> None:
        self.recorder = recorder
        self.proxy = proxy

    def run(self, case: Case) -> Outcome:
        """Play `case`, then check that the proxy still answers a plain GET (which also
        ends any run of failed exchanges the endpoint's failure accrual counts)."""
        self.recorder.reset(case.answer)
        if case.scenario is not None:
            outcome = case.scenario(self, case)
        else:
            want = sum(1 for a in case.answers if a.isdigit())
            until_close = "close" in case.answers
            ex = self.exchange(case.send, want=want, until_close=until_close, timeout_s=case.wait_s)
            outcome = Outcome(answers=ex.spelled(), reached=self.reached(), responses=ex.answers)
        self.recorder.answer = echo
        after = self.exchange(get("/settle"))
        if after.spelled() != ["200"] or after.answers[0].body != b"GET /settle":
            outcome.problems.append(f"then a plain GET was answered {after.spelled()}")
        return outcome

    def exchange(
        self,
        raw: bytes,
        *,
        want: int = 1,
        until_close: bool = False,
        timeout_s: float = SOCKET_TIMEOUT_S,
    ) -> Exchange:
        return exchange(
            self.proxy.outbound, raw, want=want, until_close=until_close, timeout_s=timeout_s
        )

    def reached(self) -> list[str]:
        return [r.summary() for r in list(self.recorder.seen)]


def judge(case: Case, outcome: Outcome, recorder: Recorder) -> list[str]:
    """Every way `outcome` differs from what `case` expects (empty: the case passes)."""
    problems = list(outcome.problems)
    if tuple(outcome.answers) != case.answers:
        problems.append(f"answered {outcome.answers}, want {list(case.answers)}")
    if case.reached is not None and tuple(outcome.reached) != case.reached:
        problems.append(f"backend got {outcome.reached}, want {list(case.reached)}")
    heads = [m.headers for m in outcome.responses] + [r.headers for r in recorder.seen]
    for name in case.absent:
        if any(k == name for h in heads for k, _ in h):
            problems.append(f"header {name!r} got through")
    problems += [f"backend could not frame a request: {u}" for u in recorder.unreadable]
    return problems


@dataclass
class Result:
    """One row of the table: the case, what happened, and the verdict."""

    case: Case
    outcome: Outcome
    problems: list[str]

    @property
    def verdict(self) -> str:
        if self.case.xfail:
            return "XPASS" if not self.problems else f"xfail ({self.case.xfail})"
        return "ok" if not self.problems else "FAIL"


RESULTS: list[Result] = []
"""Filled by test_attacks.py, printed by conftest.py's terminal summary."""


@contextlib.contextmanager
def running_lab(tmp: Path) -> Iterator[Lab]:
    """A recorder, the route table on it, and the proxy process; all stopped after."""
    recorder = Recorder().start()
    manifest = tmp / "attacks.yaml"
    manifest.write_text(table_manifest(recorder.port))
    proxy = ProxyProcess(manifest, tmp / "proxy.log")
    try:
        proxy.start()
        yield Lab(recorder, proxy)
    finally:
        proxy.stop()
        recorder.stop()
