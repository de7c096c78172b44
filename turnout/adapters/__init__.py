"""Adapters: other APIs translated into the engine's own model objects.

`smi` turns SMI TrafficSplits (with their HTTPRouteGroups) into the HTTPRoutes they stand
for. Adapters yield `engine.model` objects only; they never build IR and never talk to a
proxy (tests/test_layering.py holds that).
"""

from __future__ import annotations
