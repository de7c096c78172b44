"""The control-plane engine: model -> validate -> compile -> IR -> xDS."""

from __future__ import annotations
