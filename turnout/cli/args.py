"""The parser's shared parts: one-line usage errors, value checks, the `-n` flag, the exit
codes in `--help`.

```
argv ─> MeshParser.parse_args ─┬─> Namespace ─> the command
                               └─> a bad flag or value: UsageError("mesh demo: argument
                                   --rps: must be > 0, got 0; see 'mesh demo --help'")
                                   ─> main prints "error: ..." and exits 2
```

argparse's own `error()` prints the whole usage block and exits from inside `parse_args`;
`MeshParser` raises `UsageError` instead, so a mistake is one line on stderr and `main`
decides the exit code, the same way for a bad flag as for a bad value a command finds.
The `type=` checks here run at parse time (`--rps 0`, `--workers 0`, `--admin nohost`) so a
command never starts on a value it cannot use. Standard library only: `mesh tap` and
`mesh proxy` import this and must stay light.

Not here: what a value means (addresses are parsed by the proxy's `Address`, vias by
`cli.offline`); the exit code constants (`cli.output`).
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn, TypeVar

from turnout.cli.errors import UsageError

if TYPE_CHECKING:
    from turnout.proxy.app_probes import AppProbe

EXIT_CODES_HELP = """\
exit codes (every command):
  0  ok
  1  findings: invalid manifests, failed contract cases, a proxy that cannot be reached
  2  usage or load errors: a bad flag or value, a missing or unreadable file, no objects
     in the input, manifests a command cannot run on, a --via or --gateway not in them"""


class MeshParser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors are one `UsageError` line, with the exit codes as the
    epilog of every `--help` (subparsers are made of the same class)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("epilog", EXIT_CODES_HELP)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}; see '{self.prog} --help'")


N = TypeVar("N", int, float)


def _checked(kind: Callable[[str], N], test: Callable[[N], bool], want: str) -> Callable[[str], N]:
    def parse(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"want a number {want}, got {text!r}") from None
        if not (math.isfinite(value) and test(value)):
            raise argparse.ArgumentTypeError(f"must be {want}, got {text}")
        return value

    return parse


positive_float = _checked(float, lambda v: v > 0, "> 0")
"""``--rps``, ``--interval``, ``--duration``, ``--step-seconds``: a finite number > 0."""
positive_int = _checked(int, lambda v: v >= 1, ">= 1")
"""``--workers``: a whole number >= 1."""
non_negative_int = _checked(int, lambda v: v >= 0, ">= 0")
"""``--max-rps``, ``--limit``: a whole number >= 0 (0: no limit)."""


def sample_per_million(text: str) -> int:
    """``--trace-sample``: a rate 0..1 (``0.25``) as parts per million (250000)."""
    try:
        rate = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"want a rate 0..1 (0.25), got {text!r}") from None
    if not (math.isfinite(rate) and 0 <= rate <= 1):
        raise argparse.ArgumentTypeError(f"must be a rate 0..1, got {text}")
    return round(rate * 1_000_000)


_BYTE_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3}
_BYTE_UNITS |= {"ki": 1024, "mi": 1024**2, "gi": 1024**3}


def byte_size(text: str) -> int:
    """``--max-file-size``: bytes, as a whole number with an optional Kubernetes quantity
    suffix (``16Mi``, ``512Ki``, ``20M``; ``MiB`` is read as ``Mi``), >= 1."""
    digits = text.rstrip("BbIiKkMmGg")
    unit = text[len(digits) :].lower().removesuffix("b")
    if not digits.isdigit() or unit not in _BYTE_UNITS or int(digits) < 1:
        raise argparse.ArgumentTypeError(f"want a size like 16Mi or 3145728, got {text!r}")
    return int(digits) * _BYTE_UNITS[unit]


_DURATION = re.compile(r"(?:[0-9]{1,5}(?:h|m|s|ms))+|0")
_DURATION_PART = re.compile(r"([0-9]{1,5})(h|ms|m|s)")
_DURATION_MS = {"h": 3_600_000, "m": 60_000, "s": 1_000, "ms": 1}


def duration_ms(text: str) -> int:
    """``--upstream-read-timeout``: a Gateway API Duration (``60s``, ``1m30s``, ``500ms``)
    or ``0``, in milliseconds."""
    if not _DURATION.fullmatch(text):
        raise argparse.ArgumentTypeError(f"want a duration like 60s, 1m30s or 500ms, got {text!r}")
    return sum(int(n) * _DURATION_MS[unit] for n, unit in _DURATION_PART.findall(text))


def positive_duration_ms(text: str) -> int:
    """``--lifetime``, ``--ttl``: a duration as `duration_ms` reads it, at least one second."""
    ms = duration_ms(text)
    if ms < 1000:
        raise argparse.ArgumentTypeError(f"must be at least 1s, got {text!r}")
    return ms


def host_port(text: str) -> str:
    """``HOST:PORT`` (``:PORT`` means 127.0.0.1; port 0 asks for any free port), checked and
    returned as written."""
    _, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"want HOST:PORT (port 0..65535), got {text!r}")
    return text


def workload(text: str) -> str:
    """``KIND/NAME`` (``deployment/web``): the metrics' workload label and the node id."""
    kind, slash, name = text.partition("/")
    if not (kind and slash and name) or "/" in name:
        raise argparse.ArgumentTypeError(f"want KIND/NAME (deployment/web), got {text!r}")
    return text


_LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)
_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")


def label(text: str) -> tuple[str, str]:
    """``KEY=VALUE``: a Kubernetes label (the key may have a ``prefix/``)."""
    key, eq, value = text.partition("=")
    if not eq or not key or len(value) > 63 or not _LABEL_KEY.fullmatch(key):
        raise argparse.ArgumentTypeError(f"want KEY=VALUE (app=web), got {text!r}")
    if value and not _LABEL_VALUE.fullmatch(value):
        raise argparse.ArgumentTypeError(f"not a label value: {value!r}")
    return key, value


_PORT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _port_number(text: str, whole: str, want: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"want {want}, got {whole!r} (port 1-65535)")
    return int(text)


def port_name(text: str) -> tuple[str, int]:
    """``NAME=PORT``: a container port's name (IANA_SVC_NAME, at most 15) and number."""
    name, eq, port = text.partition("=")
    if not eq or len(name) > 15 or not _PORT_NAME.fullmatch(name) or name.isdigit():
        raise argparse.ArgumentTypeError(f"want NAME=PORT (http=8080), got {text!r}")
    return name, _port_number(port, text, "NAME=PORT (http=8080)")


def probe(text: str) -> tuple[int, str]:
    """``PORT:PATH``: an HTTP probe's port and path (the query, if any, is not matched)."""
    port, colon, path = text.partition(":")
    if not colon or not path.startswith("/"):
        raise argparse.ArgumentTypeError(f"want PORT:PATH (8080:/ready), got {text!r}")
    return _port_number(port, text, "PORT:PATH (8080:/ready)"), path.split("?", 1)[0]


def app_probes(text: str) -> tuple[tuple[str, AppProbe], ...]:
    """``--app-probes``' JSON object of ``CONTAINER/KIND``: original httpGet probe."""
    from turnout.proxy.app_probes import parse_app_probes  # asyncio: only when given

    try:
        return parse_app_probes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--app-probes: {exc}") from None


def add_pod_ports(p: argparse.ArgumentParser) -> None:
    """`mesh proxy`'s ``--port-name``, ``--probe`` and ``--app-probes`` (the injector
    writes them)."""
    p.add_argument(
        "--port-name",
        action="append",
        default=[],
        type=port_name,
        metavar="NAME=PORT",
        help="a named container port of the pod (repeatable): a Server's `port: NAME`",
    )
    p.add_argument(
        "--probe",
        action="append",
        default=[],
        type=probe,
        metavar="PORT:PATH",
        help="an HTTP probe of the pod (repeatable): any client may GET it while the port's"
        " Server has no routes, as Linkerd's default probe route",
    )
    p.add_argument(
        "--app-probes",
        default=(),
        type=app_probes,
        metavar="JSON",
        help='the app containers\' rewritten probes ({"web/readyz": {"port": 8080, "path":'
        ' "/ready", ...}}): the admin port\'s GET /app-health/web/readyz makes the original'
        " probe against the app and answers its status",
    )


def add_namespace(
    p: argparse.ArgumentParser, *, help: str, default: str | None = "default"
) -> None:
    """``-n/--namespace`` as kubectl has it (default ``default``)."""
    p.add_argument("-n", "--namespace", default=default, metavar="NS", help=help)
