"""`mesh routes explain`: a `RequestOutcome` as data (for `-o json`) and as text.

The text reads top-down like a trace: which parent and virtual host, every route with
its verdict (the winner, the ones that matched but lost on precedence, the first failing
condition of the others), then what happens: the weighted backends and, for each, the
request as it sees it; or the redirect, or the direct answer; then timeouts, retry, fault
and mirrors; and the status the client gets.
"""

from __future__ import annotations

from turnout.cli.offline import BackendOutcome, RequestOutcome
from turnout.proxy import Decision


def _fmt_ms(ms: int | None) -> str:
    return "none" if ms is None else f"{ms}ms"


def policies_data(d: Decision) -> dict[str, object]:
    out: dict[str, object] = {
        "requestTimeout": _fmt_ms(d.request_timeout_ms),
        "perTryTimeout": _fmt_ms(d.per_try_timeout_ms),
    }
    if d.retry is not None:
        out["retry"] = {
            "attempts": d.retry.attempts,
            "codes": sorted(d.retry.codes),
            "on": sorted(d.retry.retry_on),
            "backoff": f"{d.retry.backoff_base_ms}ms..{d.retry.backoff_max_ms}ms",
        }
    if d.fault is not None:
        f = d.fault
        fault: dict[str, object] = {}
        if f.delay_per_million:
            fault["delay"] = f"{f.delay_ms}ms for {f.delay_per_million / 10_000:g}%"
        if f.abort_per_million:
            code = (
                f"HTTP {f.abort_http_status}"
                if f.abort_http_status
                else f"gRPC {f.abort_grpc_status}"
            )
            fault["abort"] = f"{code} for {f.abort_per_million / 10_000:g}%"
        out["fault"] = fault
    if d.mirrors:
        out["mirrors"] = [
            {"cluster": m.cluster, "percent": f"{m.per_million / 10_000:g}%"} for m in d.mirrors
        ]
    return out


def backend_data(b: BackendOutcome) -> dict[str, object]:
    out: dict[str, object] = {
        "name": b.backend.name,
        "service": b.service or "<invalid>",
        "weight": b.weight,
        "status": b.status,
        "note": b.note,
    }
    if b.redirect is not None:
        out["redirect"] = b.redirect
    if b.upstream is not None:
        u = b.upstream
        out["request"] = {
            "method": u.method,
            "host": u.authority,
            "path": u.path_and_query,
            "headers": [f"{n}: {v}" for n, v in u.headers],
        }
    if b.response_headers:
        out["responseHeaders"] = [f"{n}: {v}" for n, v in b.response_headers]
    return out


def outcome_data(o: RequestOutcome) -> dict[str, object]:
    e = o.explanation
    d = o.decision
    data: dict[str, object] = {
        "parent": o.via.parent,
        "listener": e.listener,
        "fromNamespace": o.via.from_namespace,
        "virtualHost": e.virtual_host,
        "host": e.host_reason,
        "matched": None
        if d.route is None
        else {"route": d.route.source, "rule": d.route.rule, "match": d.route.name},
        "routes": [
            {
                "match": v.route.name,
                "rule": v.route.rule,
                "route": v.route.source,
                "outcome": v.outcome,
                "reason": v.reason,
            }
            for v in e.verdicts
        ],
        "status": o.status if o.status is not None else list(o.statuses),
    }
    if o.redirect is not None:
        data["redirect"] = o.redirect
    if o.backends:
        data["backends"] = [backend_data(b) for b in o.backends]
    if o.response_headers:
        data["responseHeaders"] = [f"{n}: {v}" for n, v in o.response_headers]
    if d.route is not None:
        data["policies"] = policies_data(d)
    return data


def outcome_text(o: RequestOutcome) -> str:
    e = o.explanation
    d = o.decision
    lines = [
        f"parent:   {o.via.parent}"
        + (f" (client namespace {o.via.from_namespace})" if o.via.from_namespace else "")
    ]
    lines.append(f"host:     {e.host_reason}")
    if e.verdicts:
        lines.append("routes (in precedence order):")
        for v in e.verdicts:
            mark = {"winner": "=>", "lower-precedence": " -", "no-match": " x"}[v.outcome]
            lines.append(f"  {mark} {v.route.name}  ({v.route.source})")
            lines.append(f"       {v.reason}")
    if d.route is None:
        lines.append("matched:  nothing")
    else:
        lines.append(f"matched:  {d.route.rule} of {d.route.source}")
    if o.redirect is not None:
        lines.append(f"redirect: {o.redirect}")
    for b in o.backends:
        lines.append(
            f"backend:  {b.service or '<invalid>'} weight {b.weight} -> {b.status} ({b.note})"
        )
        if b.upstream is not None and b.weight > 0:
            u = b.upstream
            lines.append(f"          {u.method} {u.path_and_query}  Host: {u.authority}")
            lines.extend(f"          {name}: {value}" for name, value in u.headers)
        lines.extend(f"          response {name}: {value}" for name, value in b.response_headers)
    lines.extend(f"response: {name}: {value}" for name, value in o.response_headers)
    if d.route is not None:
        p = policies_data(d)
        lines.append(f"timeouts: request {p['requestTimeout']}, per try {p['perTryTimeout']}")
        if "retry" in p:
            lines.append(f"retry:    {p['retry']}")
        if "fault" in p:
            lines.append(f"fault:    {p['fault']}")
        if "mirrors" in p:
            lines.append(f"mirrors:  {p['mirrors']}")
    status = str(o.status) if o.status is not None else " or ".join(str(s) for s in o.statuses)
    lines.append(f"status:   {status}")
    return "\n".join(lines) + "\n"
