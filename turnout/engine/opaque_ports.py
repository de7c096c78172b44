"""Which Service ports are opaque: Linkerd's ``config.linkerd.io/opaque-ports``.

```
Service annotation, else its Namespace's: "25,3306, 4000-4100,mysql"
   a port is listed by its number, its numeric targetPort or its name (a range: numbers)
```

Pure. Read by the compiler (a Service parent's ``opaque``: clients forward its bytes
untouched, docs/capture.md) and by the policy adapter's server-first warnings.
"""

from __future__ import annotations

from turnout.engine.config import OPAQUE_PORTS_ANNOTATION
from turnout.engine.model import Service
from turnout.engine.model.core import ServicePort


def parse_ports(text: str) -> tuple[set[int], set[str]]:
    """``25,3306, 4000-4100,mysql`` -> ({25, 3306, 4000..4100}, {"mysql"}); junk is skipped."""
    numbers: set[int] = set()
    names: set[str] = set()
    for part in (p.strip() for p in text.split(",")):
        lo, sep, hi = part.partition("-")
        if sep and lo.isdigit() and hi.isdigit() and int(lo) <= int(hi) <= 65535:
            numbers.update(range(int(lo), int(hi) + 1))
        elif part.isdigit():
            numbers.add(int(part))
        elif part:
            names.add(part)
    return numbers, names


def listed(port: ServicePort, text: str | None) -> bool:
    """`port` is named by an opaque-ports annotation's `text` (None or "": no)."""
    if not text:
        return False
    numbers, names = parse_ports(text)
    target = port.target_port
    return (
        port.port in numbers
        or (isinstance(target, int) and target in numbers)
        or (port.name is not None and port.name in names)
        or (isinstance(target, str) and target in names)
    )


def service_port_opaque(svc: Service, port: int, namespace_text: str | None) -> bool:
    """The Service's `port` is marked opaque by its annotation or its Namespace's."""
    own = svc.metadata.annotations.get(OPAQUE_PORTS_ANNOTATION)
    for sp in svc.spec.ports:
        if sp.port == port and sp.protocol == "TCP":
            return listed(sp, own) or listed(sp, namespace_text)
    return False
