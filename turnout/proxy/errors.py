"""Exceptions raised by the proxy.

```
ProxyError
 └── TableError        an xDS update that cannot be applied (becomes the NACK reason)
```

`UpstreamError` and its children (timeouts, connect and protocol errors) join this tree with
the per-request path. User mistakes in routes are diagnostics in the engine, not exceptions
here: by the time resources reach the proxy, a `TableError` means the control plane sent
something the contract in `docs/xds.md` does not allow, or that this proxy cannot honour.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class ProxyError(Exception):
    """Base of every exception the proxy raises on purpose."""


class TableError(ProxyError):
    """An xDS resource that cannot be turned into a runtime table.

    The message names the resource (type and name, plus the route inside it) and the field
    path, e.g. ``RouteConfiguration "web.shop.svc.cluster.local:80" virtual_hosts[0].routes[2]
    (httproute/shop/web/rule/0/match/0) match.safe_regex.regex: invalid regex ...``.
    """

    def __init__(self, resource: str, field: str, message: str) -> None:
        self.resource = resource
        """Resource type and name, plus the route within it when there is one."""
        self.field = field
        """Field path inside the resource, protobuf field names, ``[i]`` for list items."""
        self.message = message
        super().__init__(f"{resource} {field}: {message}")
