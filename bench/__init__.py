"""Benchmarks (`make bench`): printed as figures and ratios against a baseline of the same run."""

from __future__ import annotations
