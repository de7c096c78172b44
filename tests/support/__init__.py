"""Helpers shared between test suites (STYLE.md: one shared test kit)."""
