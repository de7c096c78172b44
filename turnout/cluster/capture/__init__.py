"""`mesh proxy-init`: the iptables rules that send a pod's TCP through its proxy.

```
CaptureConfig ─ render_rules ─► Rules (two nat chains + the jumps into them)
             ─ restore_batch(rules, saved) ─► one `iptables-restore --noflush` batch
apply_rules(config) ─ iptables-save -t nat ─► batch ─► iptables-restore ─► Applied
```

Stdlib only: it runs in an init container (`tests/test_layering.py`).
"""

from __future__ import annotations
