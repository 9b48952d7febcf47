"""--retry-failed reruns only the hosts that failed or were unreachable in the last run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def cli(*args: str, run_dir: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TFGPU_RUN_DIR=str(run_dir), COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "tfgpu_provision.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_retry_failed_reruns_the_failed_host_then_has_nothing_left(tmp_path: Path) -> None:
    no_runs = cli("plan", "--inventory", "local", "--retry-failed", run_dir=tmp_path)
    assert no_runs.returncode == 2 and "no earlier run" in no_runs.stderr

    failed = cli("plan", "--inventory", "local", "-e", "tfgpu_require_gpu=true", run_dir=tmp_path)
    assert failed.returncode == 1, failed.stderr

    retried = cli("plan", "--inventory", "local", "--retry-failed", run_dir=tmp_path)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "localhost" in retried.stdout
    assert len(list(tmp_path.iterdir())) == 2

    nothing = cli("plan", "--inventory", "local", "--retry-failed", run_dir=tmp_path)
    assert nothing.returncode == 0
    assert "no failed or unreachable host" in nothing.stderr
    assert len(list(tmp_path.iterdir())) == 2, "nothing to retry must not start a run"


def test_retry_failed_conflicts_with_limit(tmp_path: Path) -> None:
    proc = cli(
        "plan", "--inventory", "local", "--retry-failed", "--limit", "localhost", run_dir=tmp_path
    )
    assert proc.returncode == 2
    assert "--retry-failed and --limit" in proc.stderr
