"""The sandbox node's supervisor outlasts boots that fail for a moment after a reboot.

A reboot ends the node's namespace; on a loaded machine the old namespace can still hold the
node's port or overlay for a moment while the new boot starts, and that boot fails at once.
The supervisor must retry with a pause, not burn its five tries in a few milliseconds and give
the node up (seen as "Timed out waiting for last boot time check" in the driver's reboot).

The real supervisor script runs here (it needs root for ``unshare``) with a stand-in boot
script (``blocked_boot``) instead of the node's: it fails at once while a blocker file exists,
and otherwise records that it booted and stops the loop. No rootfs and no sshd are needed.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tfgpu_provision.sandbox import node as nodes

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="the supervisor's unshare needs root"),
]


def blocked_boot(node_dir: Path) -> str:
    """A stand-in for boot.sh: fails fast while ``blocked`` exists, else boots once and stops."""
    return f"""#!/bin/sh
node_dir={shlex.quote(str(node_dir))}
echo boot >> "$node_dir/boots"
[ -e "$node_dir/blocked" ] && exit 1
touch "$node_dir/booted" "$node_dir/stop"
"""


def test_boots_that_fail_at_once_are_retried_after_a_pause(tmp_path: Path) -> None:
    node = nodes.NodeFiles(name="sup-1", dir=tmp_path)
    (tmp_path / "supervise.sh").write_text(
        nodes.SUPERVISE_SH.format(name=node.name, node_dir=shlex.quote(str(tmp_path)))
    )
    (tmp_path / "boot.sh").write_text(blocked_boot(tmp_path))
    (tmp_path / "blocked").touch()
    # The blocker goes after 1.5 s: longer than five immediate retries take, shorter than
    # the supervisor's pauses add up to.
    threading.Timer(1.5, lambda: (tmp_path / "blocked").unlink(missing_ok=True)).start()

    proc = subprocess.run(
        ["sh", str(tmp_path / "supervise.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    boots = (tmp_path / "boots").read_text().count("boot")
    assert not node.failed_file.exists(), f"gave up after {boots} boots:\n{proc.stderr}"
    assert (tmp_path / "booted").exists(), proc.stderr
    assert 2 <= boots <= 5, proc.stderr
    assert "booting it again" in proc.stderr


def test_a_node_that_never_boots_is_given_up_with_its_exit_code(tmp_path: Path) -> None:
    node = nodes.NodeFiles(name="sup-2", dir=tmp_path)
    (tmp_path / "supervise.sh").write_text(
        nodes.SUPERVISE_SH.format(name=node.name, node_dir=shlex.quote(str(tmp_path)))
    )
    (tmp_path / "boot.sh").write_text(blocked_boot(tmp_path))
    (tmp_path / "blocked").touch()
    started = time.monotonic()
    proc = subprocess.run(
        ["sh", str(tmp_path / "supervise.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert node.failed_file.read_text().strip() == "1"
    assert "giving up" in proc.stderr
    assert (tmp_path / "boots").read_text().count("boot") == 5
    # Pauses of 1 + 2 + 3 + 4 s between the five boots.
    assert time.monotonic() - started >= 10
