"""Ctrl-C during a run: the runner is cancelled, the host's task is stopped, exit code 130,
and a partial summary is written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SLOW = REPO / "tests" / "fixtures" / "playbooks" / "slow_task.yml"

DRIVER = """
import sys
from pathlib import Path
from tfgpu_provision import inventory, runner
request = runner.RunRequest(playbook=sys.argv[1], inventory=inventory.locate("local"),
                            run_root=Path(sys.argv[2]))
sys.exit(runner.run(request).exit_code)
"""


def _sleepers() -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", b"97"]:
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def test_ctrl_c_cancels_the_run_and_exits_130(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(SLOW), str(tmp_path)], env=dict(os.environ)
    )
    deadline = time.monotonic() + 60
    while not _sleepers():
        assert proc.poll() is None, "the run ended before the slow task started"
        assert time.monotonic() < deadline, "the slow task never started"
        time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    (run_dir,) = list(tmp_path.iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["cancelled"] is True
    assert summary["exit_code"] == 130
    assert summary["status"] == "canceled"
    deadline = time.monotonic() + 15
    while _sleepers() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not _sleepers(), "the interrupted task's process is still running"
