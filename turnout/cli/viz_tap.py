"""`mesh tap`, `mesh top`, `mesh diagnostics`: what a workload's proxies see, live.

```
mesh tap deploy/web -n NS   GET <control plane>/tap?target=deploy/web&namespace=NS&…  (fan-in)
mesh tap --admin ADDR       GET <proxy admin>/tap?format=json&…                       (one proxy)
   └─ NDJSON events ─> viz.tap.tap_line (text, wide) or the JSON line itself (-o json)
mesh top deploy/web         the same stream ─> viz.top.Top (a reader thread) ─> redraw
mesh diagnostics proxy-metrics deploy/web   /debug/proxies ─> each admin's /metrics
mesh diagnostics endpoints svc/web          /debug/table?format=json ─> the Service's endpoints
```

Bad targets and an unreachable control plane or proxy are one ``error:`` line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import TextIO

from turnout.cli.output import EXIT_FAILED, EXIT_OK, EXIT_UNLOADABLE
from turnout.engine.workloads import Selection, parse_selection, select_data
from turnout.viz.tap import tap_line
from turnout.viz.targets import parse_target
from turnout.viz.top import Top, render

STREAM_TIMEOUT_S = 300.0
"""How long a tap read may wait for the next event (idle streams end then)."""


class CliError(Exception):
    """One line for stderr, and the exit code."""

    def __init__(self, message: str, code: int = EXIT_UNLOADABLE) -> None:
        super().__init__(message)
        self.code = code


def _namespace(args: argparse.Namespace) -> str:
    return "" if getattr(args, "all_namespaces", False) else str(args.namespace or "default")


def _selection(args: argparse.Namespace) -> Selection:
    """The target, checked by the viz commands' kubectl-style parser (`viz.targets`), as
    the control plane selects proxies (`engine.workloads`)."""
    try:
        parse_target(args.target, namespace=_namespace(args) or "default")
        return parse_selection(args.target, _namespace(args))
    except ValueError as exc:
        raise CliError(str(exc)) from None


def tap_url(args: argparse.Namespace) -> str:
    """The stream to read: one proxy's ``/tap`` or the control plane's fan-in."""
    query = {
        "method": args.method,
        "authority": args.authority,
        "path": args.path,
        "max_rps": str(args.max_rps),
        "limit": str(getattr(args, "limit", 0)),
    }
    if args.admin:
        if args.to:
            raise CliError("--to needs a target through the control plane, not --admin")
        return f"http://{args.admin}/tap?{urllib.parse.urlencode({**query, 'format': 'json'})}"
    if not args.target:
        raise CliError("name a target (e.g. deploy/web) or one proxy with --admin HOST:PORT")
    sel = _selection(args)
    query.update(target=args.target, namespace=sel.namespace)
    if args.to:
        try:
            to = parse_selection(args.to, args.to_namespace or sel.namespace)
        except ValueError as exc:
            raise CliError(f"--to: {exc}") from None
        query.update(to=args.to, to_namespace=to.namespace)
    return f"http://{args.control_plane}/tap?{urllib.parse.urlencode(query)}"


def _open(url: str, what: str, timeout: float = STREAM_TIMEOUT_S) -> Iterator[bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            yield from resp
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", errors="replace").strip().splitlines()
        why = body[0] if body else exc.reason
        raise CliError(str(why), EXIT_FAILED if exc.code == 404 else EXIT_UNLOADABLE) from None
    except (OSError, urllib.error.URLError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(f"cannot reach {what}: {reason}") from None


def _what(args: argparse.Namespace) -> str:
    return (
        f"the proxy at {args.admin}"
        if getattr(args, "admin", None)
        else (f"the control plane at {args.control_plane}")
    )


def events(args: argparse.Namespace) -> Iterator[dict[str, object]]:
    for line in _open(tap_url(args), _what(args)):
        if line.strip():
            event = json.loads(line)
            if isinstance(event, dict):
                yield event


def _guard(err: TextIO, body: Callable[[], int]) -> int:
    try:
        return int(body())
    except KeyboardInterrupt:
        return EXIT_OK
    except CliError as exc:
        print(f"error: {exc}", file=err)
        return exc.code


def run_tap(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`mesh tap`: one line per event, Linkerd's format (or the JSON events)."""

    def body() -> int:
        for event in events(args):
            if args.output == "json":
                out.write(json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n")
            else:
                out.write(tap_line(event, wide=args.output == "wide") + "\n")
            out.flush()
        return EXIT_OK

    return _guard(err, body)


def run_top(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`mesh top`: redraw the table every --refresh (ANSI when stdout is a terminal)."""
    top = Top(routes=args.routes, hide_sources=args.hide_sources)
    lock = threading.Lock()
    failed: list[CliError] = []
    url = tap_url(args)

    def read() -> None:
        try:
            for line in _open(url, _what(args)):
                if line.strip():
                    with lock:
                        top.add(json.loads(line))
        except CliError as exc:
            failed.append(exc)

    def draw(tty: bool) -> None:
        with lock:
            lines = render(top.rows(), routes=args.routes, hide_sources=args.hide_sources)
        if tty:
            out.write("\x1b[H\x1b[2J(press Ctrl-C to quit)\n")
        out.write("\n".join(lines) + "\n" + ("" if tty else "\n"))
        out.flush()

    def body() -> int:
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        tty = out.isatty()
        start = time.monotonic()
        stop_at = start + (args.refresh if args.once else args.duration or float("inf"))
        while True:
            reader.join(max(0.0, min(args.refresh, stop_at - time.monotonic())))
            if failed:
                raise failed[0]
            done = time.monotonic() >= stop_at or not reader.is_alive()
            if tty or done or not (args.once or args.duration):
                draw(tty)
            if done:
                return EXIT_OK

    return _guard(err, body)


def _get_json(url: str, what: str) -> object:
    return json.loads(b"".join(_open(url, what, timeout=30)))


def run_proxy_metrics(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`mesh diagnostics proxy-metrics TARGET`: each proxy's /metrics, after a # line."""

    def body() -> int:
        sel = _selection(args)
        data = _get_json(f"http://{args.control_plane}/debug/proxies", _what(args))
        proxies = select_data(data, sel)
        if not proxies:
            raise CliError(f"no proxies for {args.target} in namespace {sel.namespace}", 1)
        for p in proxies:
            who = p["pod"] or f"- (proxyless deploy/{p['workload'].rpartition('/')[2]})"
            out.write(f"#\n# POD {who} (admin {p['admin']})\n#\n")
            text = b"".join(_open(f"http://{p['admin']}/metrics", f"the proxy at {p['admin']}", 30))
            out.write(text.decode("utf-8", errors="replace"))
        return EXIT_OK

    return _guard(err, body)


def run_endpoints(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`mesh diagnostics endpoints svc/NAME[:PORT]`: NAMESPACE IP PORT POD SERVICE."""

    def body() -> int:
        kind, _, rest = args.target.partition("/")
        name, _, port = rest.partition(":")
        if kind.lower() not in ("svc", "service", "services") or not name or "/" in name:
            raise CliError(f"target must be svc/NAME[:PORT], got {args.target!r}")
        if port and not port.isdigit():
            raise CliError(f"port must be a number, got {port!r}")
        ns = _namespace(args)
        data = _get_json(f"http://{args.control_plane}/debug/table?format=json", _what(args))
        rows = endpoint_rows(data, ns, name, int(port) if port else 0)
        if not rows:
            raise CliError(f"no endpoints for svc/{name} in namespace {ns or '(any)'}", 1)
        if args.output == "json":
            out.write(json.dumps(rows, indent=2) + "\n")
            return EXIT_OK
        head = ["NAMESPACE", "IP", "PORT", "POD", "SERVICE", "WEIGHT", "ZONE"]
        table = [head] + [[str(r[k.lower()]) for k in head] for r in rows]
        widths = [max(len(t[i]) for t in table) for i in range(len(head))]
        for t in table:
            out.write(
                "   ".join(c.ljust(w) for c, w in zip(t, widths, strict=True)).rstrip() + "\n"
            )
        return EXIT_OK

    return _guard(err, body)


def endpoint_rows(data: object, namespace: str, service: str, port: int) -> list[dict[str, object]]:
    """The served table's endpoints of one Service (every port, or `port`)."""
    table = data.get("table", {}) if isinstance(data, dict) else {}
    clusters = table.get("clusters", []) if isinstance(table, dict) else []
    rows: list[dict[str, object]] = []
    for c in clusters:
        if c.get("service") != service or (namespace and c.get("namespace") != namespace):
            continue
        if port and c.get("port") != port:
            continue
        for e in c.get("endpoints", []):
            rows.append(
                {
                    "namespace": c.get("namespace"),
                    "ip": e.get("address"),
                    "port": e.get("port"),
                    "pod": e.get("pod") or "-",
                    "service": f"{service}.{c.get('namespace')}:{c.get('port')}",
                    "weight": e.get("weight", 1),
                    "zone": e.get("zone") or "-",
                }
            )
    return rows
