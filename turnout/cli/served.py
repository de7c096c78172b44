"""What a running control plane serves, read from its admin port (`mesh serve --admin`).

```
--control-plane HOST:PORT ── GET /debug/table?format=json ──> render.from_data ─> RouteTable,
 (default: the local            {"version", "table", "status"}                  RouteStatus...
  mesh serve's admin)     ── GET /debug/diagnostics ────────> what the last change did: its
                                                              diagnostics, the rejected inputs
                          ──> Served ──> mesh routes / routes explain / routes --live, the demo
```

The table comes back as the same IR `-f` compiles to, so every view (`views.route_rows`,
`OfflineMesh` for explain) works on it unchanged. Plain stdlib HTTP in the caller's thread,
with a timeout; a control plane that cannot be reached, or answers something else than a
control plane would, is one `CommandError` line (exit 2). Nothing here prints.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from turnout.cli.errors import CommandError
from turnout.engine import ir
from turnout.engine.diagnostics import Diagnostic
from turnout.engine.render import diagnostic_from_data, from_data

DEFAULT_TIMEOUT_S = 5.0
"""One GET of the admin port, connection included."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RejectedInput:
    file: str
    kept: bool
    """True: its last good version is served; False: it is left out."""
    diagnostics: tuple[Diagnostic, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Served:
    address: str
    version: int | None
    """Version of the served table; None = no table yet."""
    table: ir.RouteTable | None
    statuses: tuple[ir.RouteStatus, ...]
    diagnostics: tuple[Diagnostic, ...]
    """Of the last change's compiled inputs (warnings and infos)."""
    gateway_statuses: tuple[ir.GatewayStatus, ...] = ()
    rejected: tuple[RejectedInput, ...]
    """What the last change held back, and why."""
    error: str | None
    """Why the last change failed outright; None = it did not."""
    last_good_version: int | None

    def summary(self) -> str:
        """``control plane HOST:PORT: serving version N ...``, then a line per rejected input."""
        if self.version is None:
            head = f"control plane {self.address}: no table served yet"
        else:
            head = f"control plane {self.address}: serving version {self.version}"
        if self.rejected:
            good = self.last_good_version
            head += f", {len(self.rejected)} input(s) rejected (last change applied in full: "
            head += f"version {good})" if good is not None else "none)"
        if self.error:
            head += f"; the last change failed: {self.error}"
        for r in self.rejected:
            kept = "its last good version is served" if r.kept else "left out"
            head += f"\nrejected {r.file} ({kept}):"
        return head


def _get(address: str, path: str, timeout_s: float) -> tuple[int, bytes]:
    url = f"http://{address}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise CommandError(
            f"cannot reach the control plane at {address}: {reason} "
            "(start `mesh serve`, pass --control-plane HOST:PORT, or -f PATH for files)"
        ) from None


def _json(address: str, path: str, body: bytes) -> Mapping[str, object]:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise CommandError(f"{address}{path}: not a control plane's answer (no JSON object)")
    return data


def read_served(address: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Served:
    """The table `address` serves, with its version and the last change's findings."""
    status, body = _get(address, "/debug/diagnostics", timeout_s)
    if status != 200:
        raise CommandError(f"{address}/debug/diagnostics: HTTP {status} (is it `mesh serve`?)")
    diags = _json(address, "/debug/diagnostics", body)
    status, body = _get(address, "/debug/table?format=json", timeout_s)
    table: ir.RouteTable | None = None
    statuses: tuple[ir.RouteStatus, ...] = ()
    gateways: tuple[ir.GatewayStatus, ...] = ()
    version: int | None = None
    try:
        if status == 200:
            data = _json(address, "/debug/table", body)
            table = from_data(ir.RouteTable, data.get("table"), path="table")
            statuses = tuple(from_data(ir.RouteStatus, s) for s in _list(data.get("status")))
            gateways = tuple(
                from_data(ir.GatewayStatus, g) for g in _list(data.get("gatewayStatus"))
            )
            version = _int(data.get("version"))
        elif status != 404:  # 404: no table served yet
            raise CommandError(f"{address}/debug/table: HTTP {status}")
        return Served(
            address=address,
            version=version,
            table=table,
            statuses=statuses,
            gateway_statuses=gateways,
            diagnostics=tuple(diagnostic_from_data(d) for d in _list(diags.get("diagnostics"))),
            rejected=tuple(_rejected(r) for r in _list(diags.get("rejected"))),
            error=str(diags["error"]) if diags.get("error") else None,
            last_good_version=_int(diags.get("last_good_version")),
        )
    except ValueError as exc:
        raise CommandError(f"{address}: the control plane's answer does not read: {exc}") from None


def _list(value: object) -> list[object]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"expected a list, got {type(value).__name__}")
    return value


def _int(value: object) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ValueError(f"expected a version number, got {value!r}")


def _rejected(value: object) -> RejectedInput:
    if not isinstance(value, dict) or not isinstance(value.get("file"), str):
        raise ValueError(f"expected a rejected input, got {value!r}")
    return RejectedInput(
        file=value["file"],
        kept=bool(value.get("kept")),
        diagnostics=tuple(diagnostic_from_data(d) for d in _list(value.get("diagnostics"))),
    )
