"""The one rich Console of the package (stdout) and one for errors (stderr)."""

from __future__ import annotations

import os
import sys

from rich.console import Console

# Piped into a log (CI, `make demo | tee`): wide enough that tables keep their columns.
_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160

console = Console(highlight=False, width=_WIDTH)
err_console = Console(stderr=True, highlight=False, width=_WIDTH)
