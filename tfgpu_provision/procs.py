"""Process-tree helpers: stopping everything a cancelled run started on the controller.

ansible-runner stops ansible-playbook on cancel, but the workers' children (a local task's
command, ssh masters) would be orphaned and live on; the runner snapshots its descendants
when the user interrupts and stops those left after the run returns.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), fields[19]


def descendants(root: int) -> dict[int, str]:
    """Every live descendant of ``root``: pid -> start time (to avoid killing a reused pid)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is None:
            continue
        children.setdefault(stat[0], []).append(int(entry.name))
        starts[int(entry.name)] = stat[1]
    found: dict[int, str] = {}
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        found[pid] = starts[pid]
        stack.extend(children.get(pid, []))
    return found


def terminate(tree: dict[int, str], grace: float = 3.0) -> None:
    """SIGTERM each process of ``tree`` still alive (same start time), then SIGKILL."""

    def alive() -> list[int]:
        return [
            pid for pid, start in tree.items() if (s := _stat(pid)) is not None and s[1] == start
        ]

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while alive() and time.monotonic() < deadline:
            time.sleep(0.1)
