"""tests/viz: the shared demo mesh with its Prometheus (`lab.py`)."""

from __future__ import annotations

from tests.viz.lab import viz_lab

__all__ = ["viz_lab"]
