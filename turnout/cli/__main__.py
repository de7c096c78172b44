"""`python -m turnout.cli`: the `mesh` command (what child processes run)."""

from __future__ import annotations

import sys

from turnout.cli.main import main

sys.exit(main())
