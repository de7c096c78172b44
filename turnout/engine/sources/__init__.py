"""Where the control plane's resources come from.

```
directory.py  DirectorySource: a watched manifests directory ─┐
k8s/          list+watch of the API server ──────────────────────┴─> publish(RouteTable) -> version
```

Sources load, validate and compile (`engine.pipeline`), keep the last good table when an
input has errors, and hand good tables to `engine.server.AdsServer.publish`. Only this package
uses the kubernetes client.
"""

from __future__ import annotations

from turnout.engine.sources.directory import DirectorySettings, DirectorySource, SourceStatus

__all__ = ["DirectorySettings", "DirectorySource", "SourceStatus"]
