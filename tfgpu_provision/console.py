"""The one rich Console of the package (stdout) and one for errors (stderr)."""

from __future__ import annotations

from rich.console import Console

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)
