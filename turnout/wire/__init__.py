"""Wire formats that the control plane and the proxy both speak and neither owns: message
definitions only (protobuf), no transport and no imports from the rest of Turnout."""

from __future__ import annotations
