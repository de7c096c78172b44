"""The compiler: a pure function from a `Resources` snapshot to IR, route and Gateway status, and diagnostics.

`compile_table(resources, options=...)` does no I/O and uses no clock or randomness; the same
snapshot (and options) always gives an equal `CompileResult`. `CompileOptions` says what the
inputs are: with `complete_inputs` (the Kubernetes source) they are the whole cluster, so
what is not among them does not exist. Loading, schema/CEL validation and dropping invalid
objects happen before it (`turnout.engine.pipeline`); semantic findings (a backend, parent
or grant not among the inputs) come out of it as warnings.
"""

from __future__ import annotations

from dataclasses import dataclass

from turnout.engine import ir
from turnout.engine.compile.backends import report_fqdn_slices
from turnout.engine.compile.context import DEFAULT_COMPILE_OPTIONS, CompileOptions, Ctx
from turnout.engine.compile.index import build_index
from turnout.engine.compile.table import build_table
from turnout.engine.diagnostics import Diagnostic, sorted_diagnostics
from turnout.engine.model import Resources


@dataclass(frozen=True, slots=True, kw_only=True)
class CompileResult:
    table: ir.RouteTable
    statuses: tuple[ir.RouteStatus, ...]
    """`status.parents` entries Turnout owns, one `RouteStatus` per route with any."""
    diagnostics: tuple[Diagnostic, ...]
    gateway_statuses: tuple[ir.GatewayStatus, ...] = ()
    """`status` of every Gateway Turnout serves (its class ours or not among the inputs)."""


def compile_table(
    resources: Resources, *, options: CompileOptions = DEFAULT_COMPILE_OPTIONS
) -> CompileResult:
    ctx = Ctx(index=build_index(resources), options=options)
    table, statuses, gateway_statuses = build_table(ctx)
    report_fqdn_slices(ctx)
    return CompileResult(
        table=table,
        statuses=tuple(statuses),
        gateway_statuses=tuple(gateway_statuses),
        diagnostics=tuple(sorted_diagnostics(ctx.diags)),
    )


__all__ = ["DEFAULT_COMPILE_OPTIONS", "CompileOptions", "CompileResult", "compile_table"]
