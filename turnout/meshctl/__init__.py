"""The logic behind the `mesh` commands, kept free of printing: rows, explanations, contract
results. `turnout.engine.cli` parses arguments and prints what these modules return."""

from __future__ import annotations
