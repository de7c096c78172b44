"""`python -m turnout`: the `mesh` command."""

from __future__ import annotations

import sys

from turnout.cli.main import main

sys.exit(main())
