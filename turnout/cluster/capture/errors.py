"""What `mesh proxy-init` raises when it cannot go on.

```
CaptureError          the one line the command prints, then exit 2
 ├── BadFlag          a port, range, subnet or uid that cannot be a rule
 ├── IptablesMissing  the chosen iptables binaries are not installed
 └── IptablesFailed   iptables-save or iptables-restore refused (its first line of stderr)
```
"""

from __future__ import annotations


class CaptureError(Exception):
    """The whole line the user sees."""


class BadFlag(CaptureError, ValueError):
    """A flag value that cannot become a rule."""


class IptablesMissing(CaptureError):
    """No ``<iptables>-save`` / ``<iptables>-restore`` on the PATH."""


class IptablesFailed(CaptureError):
    """iptables ran and failed."""
