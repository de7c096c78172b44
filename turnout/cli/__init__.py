"""The `mesh` command line: the top floor, over the engine, the proxy and the demo.

`main` (the parser and the dispatch) runs one module per command family: `manifests`
(validate, routes, explain, test), `control_plane` (serve, bootstrap), `data_plane` (proxy,
tap), `demo`; `output` holds the exit codes and the diagnostics' format, `args` the parser's
one-line usage errors and value checks, `errors` the exceptions a command stops on. The modules beside them return data and never print:
`views` (route rows), `live` (the live columns), `explain`, `contracts`, `offline` (one
request through the in-process mesh). Only this package prints; nothing imports it but its
entry points (`mesh`, `python -m turnout`).
"""

from __future__ import annotations
