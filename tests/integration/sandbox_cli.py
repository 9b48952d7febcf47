"""Shared by the integration tests: drive `tfgpu-provision sandbox` as a user would."""

from __future__ import annotations

import subprocess
import sys


def sandbox(*args: str) -> None:
    """Run `python -m tfgpu_provision.sandbox ARGS`; fail the test with its stderr if it fails."""
    proc = subprocess.run(
        [sys.executable, "-m", "tfgpu_provision.sandbox", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, f"sandbox {args} exited {proc.returncode}: {proc.stderr}"
