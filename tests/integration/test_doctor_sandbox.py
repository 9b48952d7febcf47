"""`doctor --inventory LAB` on real sandbox hosts (Debian 12 over SSH, no GPU, no kernel modules).

Host 1 gets Debian's driver packages (nvidia-driver, libcuda1, nvidia-smi; ~277 MB, cached
under ~/.cache/tfgpu-provision/doctor-debs after the first run): the module cannot be built or
loaded there, so the doctor must rank "kernel module not loaded / no device" first and say what
to do. Host 2 has no NVIDIA anything: the doctor must say so and stop. Needs root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tfgpu_provision.sandbox import lab as labs

pytestmark = pytest.mark.integration

DEB_CACHE = Path.home() / ".cache" / "tfgpu-provision" / "doctor-debs"
DRIVER_PACKAGES = "nvidia-driver libcuda1 nvidia-smi"


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "the doctor sandbox test needs root (sandbox namespaces and overlays)"
    if shutil.which("debootstrap") is None:
        return "the doctor sandbox test needs debootstrap (apt-get install debootstrap)"
    return None


def _run(argv: list[str], timeout: int = 600, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )  # type: ignore[call-overload, no-any-return]


def _ssh(lab: labs.Lab, host: str, command: str) -> str:
    proc = _run(lab.ssh_argv(host, [command]))
    assert proc.returncode == 0, f"{host}: {command!r}:\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def _install_driver_packages(lab: labs.Lab, host: str) -> None:
    """apt-get install on the node, reusing (and refilling) the controller-side .deb cache."""
    DEB_CACHE.mkdir(parents=True, exist_ok=True)
    ssh = " ".join(lab.ssh_argv(host, []))
    archives = "/var/cache/apt/archives"
    if any(DEB_CACHE.glob("*.deb")):
        pack = f"tar -C {DEB_CACHE} -cf - . | {ssh} 'tar -C {archives} -xf -'"
        assert _run(["bash", "-o", "pipefail", "-c", pack]).returncode == 0
    _ssh(
        lab,
        host,
        "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
        f"--no-install-recommends {DRIVER_PACKAGES} >/tmp/driver-install.log 2>&1 "
        "|| { tail -30 /tmp/driver-install.log; exit 1; }",
    )
    unpack = f"{ssh} 'cd {archives} && tar -cf - *.deb' | tar -C {DEB_CACHE} -xf -"
    _run(["bash", "-o", "pipefail", "-c", unpack])


@pytest.fixture(scope="module")
def lab() -> Iterator[labs.Lab]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    name = f"doc{uuid.uuid4().hex[:6]}"
    up = _run(
        [sys.executable, "-m", "tfgpu_provision.sandbox", "up", "--name", name, "--hosts", "2"]
    )
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        lab = labs.Lab.load(name)
        _install_driver_packages(lab, "1")
        yield lab
    finally:
        _run([sys.executable, "-m", "tfgpu_provision.sandbox", "down", "--name", name])


@pytest.fixture(scope="module")
def doctor_json(lab: labs.Lab, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    run_dir = tmp_path_factory.mktemp("doctor-runs")
    proc = _run(
        [
            sys.executable,
            "-m",
            "tfgpu_provision.doctor",
            "--inventory",
            lab.name,
            "--format",
            "json",
        ],
        env=dict(os.environ, TFGPU_RUN_DIR=str(run_dir)),
    )
    assert proc.returncode == 1, (
        f"expected exit 1 (failures explained):\n{proc.stdout}{proc.stderr}"
    )
    doc: dict[str, object] = json.loads(proc.stdout)
    return doc


def _host(doc: dict[str, object], name: str) -> dict[str, object]:
    hosts = doc["hosts"]
    assert isinstance(hosts, list)
    return next(h for h in hosts if h["name"] == name)


@pytest.mark.skipif(_missing() is not None, reason=_missing() or "")
def test_driver_without_module_ranks_module_not_loaded_first(
    lab: labs.Lab, doctor_json: dict[str, object]
) -> None:
    host = _host(doctor_json, f"{lab.name}-1")
    assert host["status"] == "problems"
    top = host["findings"][0]  # type: ignore[index]
    assert top["id"] == "module_not_loaded", host["findings"]
    assert top["title"] == "Kernel module not loaded / no device"
    evidence = "\n".join(top["evidence"])
    assert "nvidia-driver" in evidence
    assert "/proc/driver/nvidia does not exist" in evidence
    assert "couldn't communicate with the NVIDIA driver" in evidence
    assert "CUDA_ERROR_NO_DEVICE" in evidence  # cuInit through the real libcuda1
    assert "modprobe nvidia" in top["fix"]
    assert "linux-headers-" in top["fix"]  # the sandbox kernel has no headers
    assert "lspci -nn -d 10de:" in top["fix"]  # and no GPU on the bus
    summary = host["summary"]
    assert summary["cuda_probe"] == "no_device"  # type: ignore[index]
    assert summary["driver_state"] == "not_loaded"  # type: ignore[index]


@pytest.mark.skipif(_missing() is not None, reason=_missing() or "")
def test_host_without_nvidia_device_says_so_and_stops(
    lab: labs.Lab, doctor_json: dict[str, object]
) -> None:
    host = _host(doctor_json, f"{lab.name}-2")
    assert host["status"] == "no_device"
    assert [f["id"] for f in host["findings"]] == ["no_nvidia_device"]  # type: ignore[union-attr]
    assert host["exit_code"] == 1


@pytest.mark.skipif(_missing() is not None, reason=_missing() or "")
def test_evidence_rerenders_as_table_and_says_tensorflow_was_skipped(
    lab: labs.Lab, doctor_json: dict[str, object]
) -> None:
    run_dir = Path(str(doctor_json["run_dir"]))
    files = sorted((run_dir / "doctor").glob("*.json"))
    assert [f.stem for f in files] == [f"{lab.name}-1", f"{lab.name}-2"]
    proc = _run(
        [sys.executable, "-m", "tfgpu_provision.doctor", "--evidence", str(files[0])],
        env=dict(os.environ, COLUMNS="160"),
    )
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    assert out.index("Kernel module not loaded / no device") < out.index("Fix:")
    assert "TensorFlow introspection skipped" in out
