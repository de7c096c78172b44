"""Where the control plane's resources come from.

```
directory.py  DirectorySource: a watched manifests directory ──DirectorySnapshot──┐
k8s/          KubernetesSource: list+watch of the API server ──ResourceSnapshot───┴─>
                                      engine.plane.ControlPlane.apply: compile, publish, status
```

Sources watch and hand snapshots to the control plane (`engine.plane`), which compiles them
off the loop, keeps the last good version of what is rejected and publishes the table. Only
this package uses the kubernetes client (`k8s/`, imported on its own: it is slow to import
and `mesh serve --dir` never needs it).
"""

from __future__ import annotations

from turnout.engine.sources.directory import DirectorySettings, DirectorySnapshot, DirectorySource

__all__ = ["DirectorySettings", "DirectorySnapshot", "DirectorySource"]
