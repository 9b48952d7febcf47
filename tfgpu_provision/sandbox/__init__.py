"""Local lab of Debian nodes reachable over SSH on 127.0.0.1, for the demo, Molecule and CI.

Each node is a mount/pid/uts/ipc namespace on an overlayfs root over one cached debootstrap
root filesystem, with ``sshd`` as its PID 1. See ``docs/sandbox.md``.
"""

from __future__ import annotations

from tfgpu_provision.sandbox.lab import Lab, LabNode, down, down_all, status, up

__all__ = ["Lab", "LabNode", "down", "down_all", "status", "up"]
