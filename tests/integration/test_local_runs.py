"""Real ansible-runner runs of the real playbooks against inventory/local (this machine).

This machine has no NVIDIA GPU: the preflight must say so, plan must exit 0, and with
tfgpu_require_gpu=true the host must fail with exit code 1 naming the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tfgpu_provision import inventory, runner

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, run_dir: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TFGPU_RUN_DIR=str(run_dir), COLUMNS="200")
    exe = shutil.which("tfgpu-provision") or ""
    cmd = [exe] if exe else [sys.executable, "-m", "tfgpu_provision.cli"]
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )


def test_runner_runs_the_preflight_playbook_for_real(tmp_path: Path) -> None:
    request = runner.RunRequest(
        playbook="preflight.yml", inventory=inventory.locate("local"), check=True, run_root=tmp_path
    )
    result = runner.run(request)
    assert result.status == "successful", (result.artifacts / "stdout").read_text()
    assert result.exit_code == 0
    host = result.model.hosts["localhost"]
    assert host.status == "ok"
    assert host.preflight is not None and host.preflight["host"]["gpu_count"] == 0
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["exit_code"] == 0
    assert summary["hosts"][0]["name"] == "localhost"
    assert (result.artifacts / "job_events").is_dir()


def test_plan_local_says_no_gpu_and_what_would_be_installed(tmp_path: Path) -> None:
    proc = cli("plan", "--inventory", "local", "--tensorflow", "2.21", run_dir=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "no NVIDIA GPU" in out or "none" in out
    assert "12.5" in out  # CUDA of TensorFlow 2.21
    assert "tensorflow[and-cuda]==2.21" in out or "2.21" in out


def test_plan_json_local(tmp_path: Path) -> None:
    proc = cli("plan", "--inventory", "local", "--format", "json", run_dir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    (host,) = doc["hosts"]
    assert host["name"] == "localhost"
    assert host["facts"]["gpu_count"] == 0
    assert host["resolution"]["stack"]["tensorflow"]
    assert any(w["code"] == "NO_GPU" for w in host["resolution"]["warnings"])


def test_plan_with_require_gpu_fails_naming_host_and_reason(tmp_path: Path) -> None:
    proc = cli("plan", "--inventory", "local", "-e", "tfgpu_require_gpu=true", run_dir=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    text = proc.stdout + proc.stderr
    assert "localhost" in text
    assert "No NVIDIA GPU was found" in text
    assert "artifacts" in text.lower()


def test_main_job_on_local_runs_site_and_summarises(tmp_path: Path) -> None:
    # The CUDA and cuDNN stages only record the pip choice: safe on this machine, in check mode.
    proc = cli("--inventory", "local", "--check", "--tags", "cuda,cudnn", run_dir=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Summary" in proc.stdout and "localhost" in proc.stdout
    (run,) = list(tmp_path.iterdir())
    assert json.loads((run / "summary.json").read_text())["exit_code"] == 0
