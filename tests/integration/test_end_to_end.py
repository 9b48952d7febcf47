"""The main job end to end on a 2-node sandbox with 2 simulated devices per node.

First run: the whole site (driver from Debian non-free, CUDA/cuDNN from pip wheels,
TensorFlow's latest release in a venv, verify on simulated devices) exits 0 and the report
says `simulated` for every device. Second run: 0 changed on every host, in less time.
Simulation off on one host: verify fails with exit 1 and the report says no GPU is visible,
why, and the fix.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tfgpu_provision.compat import load_matrix

pytestmark = pytest.mark.integration

LAB = "e2e"


def tfgpu(
    *args: str, run_dir: Path, timeout: int = 1800
) -> tuple[subprocess.CompletedProcess[str], float]:
    env = dict(os.environ, TFGPU_RUN_DIR=str(run_dir), COLUMNS="200")
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "tfgpu_provision.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    return proc, time.monotonic() - start


def newest_report(run_dir: Path) -> tuple[Path, dict[str, Any]]:
    run = max(run_dir.iterdir(), key=lambda p: p.stat().st_mtime)
    return run, json.loads((run / "report.json").read_text())


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0 or not shutil.which("debootstrap"):
        pytest.skip("the sandbox needs root and debootstrap (make setup)")
    runs = tmp_path_factory.mktemp("e2e-runs")
    up, _ = tfgpu(
        "sandbox", "up", "--name", LAB, "--hosts", "2", "--simulate-gpus", "2", run_dir=runs
    )
    assert up.returncode == 0, up.stdout + up.stderr
    yield runs
    tfgpu("sandbox", "down", "--name", LAB, run_dir=runs)


@pytest.fixture(scope="module")
def first_run(lab: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    return tfgpu("--inventory", LAB, run_dir=lab)


def test_first_run_provisions_and_verifies_simulated_devices(
    lab: Path, first_run: tuple[subprocess.CompletedProcess[str], float]
) -> None:
    proc, wall = first_run
    print(f"first run: {wall:.0f} s")
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-4000:]
    _, report = newest_report(lab)
    latest = load_matrix().latest
    assert {h["name"] for h in report["hosts"]} == {f"{LAB}-1", f"{LAB}-2"}
    for host in report["hosts"]:
        assert host["verdict"] == "simulated", host
        assert host["tensorflow"].startswith(f"{latest}."), host["tensorflow"]
        assert host["build_cuda"] and host["build_cudnn"]
        assert host["simulated_devices"] == 2
        assert host["matmul_ok"] is True and host["all_reduce_ok"] is True
        assert host["keras_loss_falling"] is True
        assert len(host["device_results"]) == 2
        assert all(d["simulated"] and d["correct"] for d in host["device_results"])
    assert "simulated" in proc.stdout


def test_second_run_changes_nothing_and_is_faster(
    lab: Path, first_run: tuple[subprocess.CompletedProcess[str], float]
) -> None:
    assert first_run[0].returncode == 0
    proc, wall = tfgpu("--inventory", LAB, run_dir=lab)
    print(f"first run: {first_run[1]:.0f} s, second run: {wall:.0f} s")
    assert proc.returncode == 0, proc.stdout[-6000:]
    run, _ = newest_report(lab)
    summary = json.loads((run / "summary.json").read_text())
    assert {h["name"]: h["changed"] for h in summary["hosts"]} == {f"{LAB}-1": 0, f"{LAB}-2": 0}
    assert wall < first_run[1]


def test_simulation_off_fails_verify_with_the_reason(
    lab: Path, first_run: tuple[subprocess.CompletedProcess[str], float]
) -> None:
    assert first_run[0].returncode == 0
    proc, _ = tfgpu(
        "verify",
        "--inventory",
        LAB,
        "--limit",
        f"{LAB}-1",
        "-e",
        "tfgpu_simulate_gpus=0",
        run_dir=lab,
    )
    assert proc.returncode == 1, proc.stdout[-6000:]
    _, report = newest_report(lab)
    (host,) = report["hosts"]
    assert host["verdict"] == "fail"
    assert host["diagnoses"], host
    text = json.dumps(host["diagnoses"]).lower()
    assert "gpu" in text and "fix" in text
