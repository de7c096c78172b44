"""Exceptions of `mesh install` / `mesh uninstall`.

```
InstallError          the manifests cannot be rendered; `cli.cluster_install` prints the one
 ├── ValuesError      line and exits 2: a values file or --set key that is unknown, of the
 │                    wrong type or refused (naming the file or the --set and the key)
 └── InvalidObject    an object that does not validate against the Kubernetes API's models
                      (never printed: the installer refuses it), naming kind/name and field
ClusterUnavailable    no cluster to ask (`--crds`' notes say why and the command goes on;
                      `--skip-existing` needs one and turns it into an InstallError)
```
"""

from __future__ import annotations


class InstallError(Exception):
    """The manifests cannot be rendered; the message is the whole line the user sees."""


class ValuesError(InstallError):
    """A values file or ``--set`` that does not fit the values tree."""


class InvalidObject(InstallError):
    """A rendered object the Kubernetes models refuse (a bug, or a value no check caught)."""


class ClusterUnavailable(Exception):
    """No cluster could be asked; the message says why. Not an `InstallError`: without a
    cluster the manifests still render."""
