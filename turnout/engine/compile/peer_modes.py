"""Endpoints whose port runs with mTLS DISABLE lose their expected identity, so clients
reach them in plaintext (Istio's auto-mTLS: a client originates mTLS only to a server that
takes it).

A Service's endpoints are its selector's pods, and an endpoint's port is the container port
the PeerAuthentication's `portLevelMtls` names: the mode is resolved for (namespace, the
Service's selector as the workload's labels, the endpoint port), as `engine.authorization.
peer_mode` does for the proxy's own port. Pure: tables in, a table out.
"""

from __future__ import annotations

import dataclasses

from turnout.engine import ir
from turnout.engine.authorization import peer_mode
from turnout.engine.ir_policy import PolicyTable
from turnout.engine.model import Resources
from turnout.engine.model.core import Service


def without_disabled_identities(
    table: ir.RouteTable, policy: PolicyTable, resources: Resources
) -> ir.RouteTable:
    if not policy.peer_authentications:
        return table
    selectors = {
        (s.obj.metadata.namespace, s.obj.metadata.name): s.obj.spec.selector
        for s in resources.of(Service)
    }
    clusters = []
    changed = False
    for c in table.clusters:
        labels = selectors.get((c.namespace, c.service))
        if labels is None or not any(e.identity for e in c.endpoints):
            clusters.append(c)
            continue
        eps = tuple(
            dataclasses.replace(e, identity=None)
            if e.identity and peer_mode(policy, c.namespace, labels, e.port) == "DISABLE"
            else e
            for e in c.endpoints
        )
        changed |= eps != c.endpoints
        clusters.append(dataclasses.replace(c, endpoints=eps) if eps != c.endpoints else c)
    return dataclasses.replace(table, clusters=tuple(clusters)) if changed else table
