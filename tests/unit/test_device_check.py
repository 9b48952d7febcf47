"""tests/gpu/device_check.sh: syntax, shellcheck, and its no-GPU path run for real.

This machine has no NVIDIA GPU, so the script must still write every JSON document, with a
clean "no device" picture: no libcuda (or no device) from the CUDA probe, 0 GPUs in the facts,
a plan for TensorFlow 2.21, and a manifest labelled "none". WHEELS_DIR is omitted here (the
script then uses $PYTHON, this virtualenv's Python); the slow test builds a wheel directory
with pip download and runs the offline install path too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tests" / "gpu" / "device_check.sh"
FAKE_SOURCE = REPO / "tests" / "fixtures" / "fake_libcuda" / "fake_libcuda.c"
DOCS = ("probe_raw", "facts", "cuda_probe", "state", "plan", "doctor", "manifest")


def run_script(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable, **env},
        timeout=600,
        check=False,
    )


def load(folder: Path, name: str) -> dict[str, object]:
    doc: dict[str, object] = json.loads((folder / f"{name}.json").read_text())
    return doc


def test_bash_syntax() -> None:
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(
    shutil.which("shellcheck") is None,
    reason="shellcheck not installed (Debian package shellcheck; make system-deps installs it)",
)
def test_shellcheck_clean() -> None:
    proc = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    assert run_script().returncode == 2
    assert run_script(str(tmp_path / "out"), str(tmp_path / "no-such-wheels")).returncode == 2


def _check_no_gpu_outputs(out: Path) -> None:
    for name in DOCS:
        assert (out / f"{name}.json").is_file(), f"{name}.json missing"
    cuda = load(out, "cuda_probe")
    assert cuda["status"] in ("no_libcuda", "no_device")
    assert cuda["devices"] == []
    facts = load(out, "facts")
    assert facts["gpu_count"] == 0
    raw = load(out, "probe_raw")
    assert "nvidia_smi" in raw and "sysfs_pci" in raw
    plan = load(out, "plan")
    assert plan["schema"] == "tfgpu-provision/plan/1"
    (host,) = plan["hosts"]  # type: ignore[misc]
    assert host["name"] == "localhost"
    assert host["resolution"]["stack"]["tensorflow"].startswith("2.21")
    doctor = load(out, "doctor")
    assert doctor["schema"] == "tfgpu-provision/doctor/1"
    assert [f["id"] for f in doctor["hosts"][0]["findings"]] == ["no_nvidia_device"]  # type: ignore[index]
    manifest = load(out, "manifest")
    assert manifest["device"] == "none"
    assert manifest["label"].startswith("none-")  # type: ignore[union-attr]
    assert all(v.startswith("ok") for v in manifest["steps"].values())  # type: ignore[union-attr]


def test_no_gpu_path_writes_clean_no_device_json(tmp_path: Path) -> None:
    out = tmp_path / "capture"
    proc = run_script(str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _check_no_gpu_outputs(out)


@pytest.mark.slow
def test_offline_install_from_a_wheel_directory(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    download = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "-d",
            str(wheels),
            "--only-binary=:all:",
            "-c",
            str(REPO / "constraints.txt"),
            "ansible-core",
            "ansible-runner",
            "pyyaml",
            "jinja2",
            "rich",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if download.returncode != 0:
        pytest.skip(f"pip download failed (no package index?): {download.stderr[-300:]}")
    out = tmp_path / "capture"
    proc = run_script(str(out), str(wheels))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _check_no_gpu_outputs(out)
