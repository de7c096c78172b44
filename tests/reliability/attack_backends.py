"""The attack cases that need a scenario: sloppy backends (BACKENDS), many Hosts (HOSTS),
manifests that attack the control plane (CONTROL_PLANE).

```
surplus / unsolicited   clients in parallel, one answer each: crossed answers counted
big header, 101         the proxy's RSS and open file descriptors before and after
never answers           the route's timeout (/slow, 300ms) and the default (no timeout)
2,000 Hosts             /metrics series before and after
alias bomb              `mesh validate` in a child with RLIMIT_AS 1 GiB and a 20 s timeout
```

A scenario returns an `Outcome` whose `answers` are words the case compares (``own
answers``, ``502``, ``exit 2``) and whose `figures` the table shows (RSS, fds, series).
"""

from __future__ import annotations

import contextlib
import functools
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.reliability.attacks import Case, Lab, Outcome, until
from tests.reliability.wire import HOLD, Client, Message, Recorded, Reply, fixed, get, response

RSS_BOUND_MB = 64
"""Growth of the proxy's RSS allowed over four 16 MB upstream heads (relayed: +150 MB)."""
FD_SLACK = 4
"""Open descriptors allowed above the count before 15 upgraded answers (leaked: +15)."""
LANE_WAIT_S = 2.0
"""A scenario's client gives up on an answer after this long (it counts as none): short, as
a client whose answer went to another one waits that long, yet long on a busy machine."""
SERIES_SLACK = 10
"""/metrics series allowed to appear for 2,000 unknown Hosts after the first one (unbounded:
+2,000 or more)."""


def _own(rec: Recorded) -> bytes:
    return response(f"{rec.method} {rec.target}".encode())


def _requests(lab: Lab, paths: Sequence[str], *, workers: int) -> list[Message | str]:
    """GET each path (Host: web), `workers` keep-alive connections in parallel; the answers
    in the order of `paths` (no answer: how the exchange ended, "close" or "timeout")."""
    out: list[Message | str] = [""] * len(paths)
    lanes = [list(range(i, len(paths), workers)) for i in range(workers)]

    def lane(indexes: list[int]) -> None:
        client: Client | None = None
        for i in indexes:
            if client is None:
                client = Client(lab.proxy.outbound, timeout_s=LANE_WAIT_S)
            client.send(get(paths[i]))
            got = client.read(1)
            answer = out[i] = got.answers[0] if got.answers else got.end
            if (
                isinstance(answer, str)
                or got.end != "open"
                or answer.status == 101
                or answer.header("connection") == "close"
            ):
                client.close()  # (a 101's connection is no longer HTTP)
                client = None
        if client is not None:
            client.close()

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lane, lanes))
    return out


def _statuses(answers: Sequence[Message | str]) -> list[str]:
    """The distinct statuses (or ends without an answer), most frequent first."""
    counts = Counter(m if isinstance(m, str) else str(m.status) for m in answers)
    return [s for s, _ in counts.most_common()]


def _crossing(lab: Lab, case: Case, *, tainted: str, every: int) -> Outcome:
    """200 GETs from 20 clients, every `every`-th to a `tainted` path (the case's sloppy
    answer); every other client must get its own answer (``GET /c/N``). With `every` 0,
    five tainted requests come first instead, then only clean ones once the backend has
    sent all its bytes and the proxy has closed those connections (1 s at most: without
    that wait, a request could still meet the unsolicited bytes on a reused connection,
    a race no HTTP/1.1 client can tell from an answer)."""
    rec, note = lab.recorder, ""
    if not every:
        _requests(lab, [f"{tainted}/w{i}" for i in range(5)], workers=5)
        until(lambda: rec.replied >= 5, timeout_s=3)
        dirty = {r.conn for r in rec.seen}
        with contextlib.suppress(TimeoutError):
            until(lambda: not dirty & rec.open, timeout_s=1)
        note = f", {len(dirty - rec.open)}/{len(dirty)} tainted conns closed"
    paths = [f"{tainted}/{i}" if every and i % every == 0 else f"/c/{i}" for i in range(200)]
    got = _requests(lab, paths, workers=20)
    clean = [(p, m) for p, m in zip(paths, got, strict=True) if not p.startswith(tainted)]
    crossed = [p for p, m in clean if isinstance(m, str) or m.body != f"GET {p}".encode()]
    answers = ["own answers"] if not crossed else [f"{len(crossed)}/{len(clean)} crossed"]
    return Outcome(
        answers=answers,
        reached=[f"{len(rec.seen)} requests on {len({r.conn for r in rec.seen})} connections"],
        figures=f"{len(clean) - len(crossed)}/{len(clean)} own{note}",
    )


def surplus(rec: Recorded) -> Reply:
    """On /poison: the answer, then a second complete response in the same write."""
    extra = response(b"surplus") if rec.target.startswith("/poison") else b""
    return Reply((_own(rec) + extra,))


def unsolicited(rec: Recorded) -> Reply:
    """On /u: the answer, then 50 ms later (the connection idle in the pool) a response
    nobody asked for."""
    if rec.target.startswith("/u"):
        return Reply((_own(rec), response(b"unsolicited")), gap_s=0.05)
    return Reply((_own(rec),))


@functools.cache
def _big_head() -> bytes:
    return response(b"big", headers="x-big: " + "a" * (16 << 20) + "\r\n")


def big_header(rec: Recorded) -> Reply:
    return Reply((_big_head(),))


def _rss_bounded(lab: Lab, case: Case) -> Outcome:
    before = lab.proxy.rss_mb()
    got = _requests(lab, [f"/big/{i}" for i in range(4)], workers=4)
    after = lab.proxy.rss_mb()
    problems = []
    if after - before > RSS_BOUND_MB:
        problems.append(f"rss grew {after - before:.0f} MB (bound {RSS_BOUND_MB})")
    return Outcome(
        answers=_statuses(got),
        reached=[f"{len(lab.recorder.seen)} GET /big/N [main]"],
        problems=problems,
        figures=f"rss {before:.0f}→{after:.0f} MB",
    )


SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"


def switching(rec: Recorded) -> Reply:
    """On /plain: 101 Switching Protocols (the GET asked for no upgrade)."""
    return Reply((SWITCHING if rec.target.startswith("/plain") else _own(rec),))


def _fds_bounded(lab: Lab, case: Case) -> Outcome:
    before = lab.proxy.fds()
    paths = [f"/{'ok' if i % 2 else 'plain'}/{i}" for i in range(30)]
    answers = _requests(lab, paths, workers=1)  # a 200 after each 101: no failure accrual
    got = [m for p, m in zip(paths, answers, strict=True) if p.startswith("/plain")]
    problems = [
        f"{p} answered {m if isinstance(m, str) else m.status}"
        for p, m in zip(paths, answers, strict=True)
        if p.startswith("/ok") and (isinstance(m, str) or m.status != 200)
    ]
    try:
        until(lambda: lab.proxy.fds() <= before + FD_SLACK, timeout_s=2)
    except TimeoutError:
        problems.append(f"open fds {before}→{lab.proxy.fds()}")
    return Outcome(
        answers=_statuses(got),
        reached=[f"{len(lab.recorder.seen)} GET /plain/N or /ok/N [main]"],
        problems=problems,
        figures=f"fds {before}→{lab.proxy.fds()}",
    )


def _hosts_bounded(lab: Lab, case: Case) -> Outcome:
    def series() -> int:
        text = lab.proxy.admin_get("/metrics")[1]
        return sum(1 for line in text.splitlines() if line and not line.startswith("#"))

    with Client(lab.proxy.outbound) as client:  # the one series of unknown hosts
        client.send(get("/", host="first.example"))
        client.read(1)
    before = series()
    hosts = [f"h{i}.example" for i in range(2_000)]
    got: list[Message | str] = []
    with Client(lab.proxy.outbound) as client:  # pipelined, 100 at a time
        for i in range(0, len(hosts), 100):
            client.send(b"".join(get("/", host=h) for h in hosts[i : i + 100]))
            got += client.read(100).answers
    after = series()
    problems = []
    if after - before > SERIES_SLACK:
        problems.append(f"/metrics grew from {before} to {after} series")
    return Outcome(
        answers=_statuses(got),
        reached=[f"{len(lab.recorder.seen)} requests"],
        problems=problems,
        figures=f"series {before}→{after}",
    )


BACKEND_CASES = [
    Case(
        id="surplus-response-concurrent",
        group="backends",
        answer=surplus,
        scenario=lambda lab, case: _crossing(lab, case, tainted="/poison", every=10),
        answers=("own answers",),
        reached=None,
        label="200 GETs, 20 clients; /poison answers twice",
        nginx="each its own (upstream connection closed)",
    ),
    Case(
        id="unsolicited-data-idle",
        group="backends",
        answer=unsolicited,
        scenario=lambda lab, case: _crossing(lab, case, tainted="/u", every=0),
        answers=("own answers",),
        reached=None,
        label="5 idle pooled conns get a response, then 200 GETs",
        nginx="each its own (idle connection closed)",
    ),
    Case(
        id="upstream-16mb-header",
        group="backends",
        answer=big_header,
        scenario=_rss_bounded,
        answers=("502",),
        reached=None,
        label="4 clients; backend sends a 16 MB header",
        nginx="502 (proxy_buffer_size)",
    ),
    Case(
        id="upstream-101-to-get",
        group="backends",
        answer=switching,
        scenario=_fds_bounded,
        answers=("502",),
        reached=None,
        label="15 GETs answered 101 (and 15 plain ones)",
        nginx="502",
    ),
    Case(
        id="upstream-connection-x-secret",
        group="backends",
        send=get("/secret"),
        answer=fixed(response(b"ok", headers="connection: x-secret\r\nx-secret: leaked\r\n")),
        answers=("200",),
        reached=("GET /secret [main]",),
        absent=("x-secret",),
        label="backend: Connection: x-secret, x-secret: …",
        nginx="200 without x-secret",
    ),
    Case(
        id="never-answers-route-timeout",
        group="backends",
        send=get("/slow/x"),
        answer=HOLD,
        answers=("504",),
        reached=("GET /slow/x [slow]",),
        label="GET /slow/x (timeout 300ms); no answer",
        nginx="504 (proxy_read_timeout)",
    ),
    Case(
        id="stops-mid-body-route-timeout",
        group="backends",
        send=get("/slow/mid"),
        answer=fixed(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n0123456789"),
        answers=("close",),
        reached=("GET /slow/mid [slow]",),
        label="GET /slow/mid; backend stops mid-body",
        nginx="close (the head was sent)",
    ),
    Case(
        id="never-answers-default-timeout",
        group="backends",
        send=get("/hang"),
        answer=HOLD,
        answers=("504",),
        reached=("GET /hang [main]",),
        label="GET /hang (no route timeout; read timeout 1s)",
        nginx="504 (proxy_read_timeout, 60s)",
        wait_s=3.0,
    ),
]

HOST_CASES = [
    Case(
        id="2000-distinct-hosts",
        group="hosts",
        scenario=_hosts_bounded,
        answers=("404",),
        reached=None,
        label="2,000 GETs, each a new Host",
        nginx="(no per-Host series)",
    ),
]


# --------------------------------------------------------------------------- control plane

LIMITED = (
    "import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30));"
    " sys.argv = ['mesh', *sys.argv[1:]]; runpy.run_module('turnout', run_name='__main__')"
)


def alias_bomb(levels: int, *, where: str) -> str:
    """An HTTPRoute whose annotations (or spec) hold ``10**levels`` strings in aliases."""
    anchors = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    anchors += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    indent = "      " if where == "annotations" else "    "
    bomb = "\n".join(indent + a for a in anchors)
    meta = f"  annotations:\n    bomb:\n{bomb}\n" if where == "annotations" else ""
    spec = f"  bomb:\n{bomb}\n" if where == "spec" else ""
    return (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
        f"metadata:\n  name: bomb\n  namespace: shop\n{meta}spec:\n{spec}"
        '  parentRefs: [{group: "", kind: Service, name: web, port: 80}]\n'
        "  rules:\n  - backendRefs: [{name: web, port: 80}]\n"
    )


def _validate(where: str) -> Callable[[Lab, Case], Outcome]:
    def run(lab: Lab, case: Case) -> Outcome:
        path = Path(lab.proxy.manifest).with_name(f"bomb-{where}.yaml")
        path.write_text(alias_bomb(7, where=where))
        argv = [sys.executable, "-c", LIMITED, "validate", "-f", str(path)]
        try:
            done = subprocess.run(argv, capture_output=True, timeout=20, check=False)
        except subprocess.TimeoutExpired:
            return Outcome(answers=["timeout 20 s"], reached=["-"])
        lines = (done.stdout + done.stderr).decode(errors="replace").splitlines()
        size = len(done.stdout) + len(done.stderr)
        first = lines[0].replace(str(path.parent) + "/", "")[:60] if lines else ""
        return Outcome(
            answers=[f"exit {done.returncode}", f"{len(lines)} line{'s' * (len(lines) != 1)}"],
            reached=["-"],
            problems=[f"printed {size:,} bytes"] if size > 1000 else [],
            figures=first,
        )

    return run


CONTROL_PLANE_CASES = [
    Case(
        id=f"validate-alias-bomb-{where}",
        group="control plane",
        scenario=_validate(where),
        answers=("exit 2", "1 line"),
        reached=None,
        label=f"mesh validate: 10^7 aliases in {where}",
        nginx="(API server: 3 MiB cap, alias cap)",
    )
    for where in ("annotations", "spec")
]
