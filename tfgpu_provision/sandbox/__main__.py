"""``python -m tfgpu_provision.sandbox up|status|ssh|down``: ``tfgpu-provision sandbox``."""

from __future__ import annotations

import sys

from tfgpu_provision.sandbox.cli import run

sys.exit(run())
