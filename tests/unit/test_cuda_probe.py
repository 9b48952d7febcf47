"""roles/gpu_doctor/files/tfgpu_cuda_probe.py against a FAKE libcuda built here with gcc.

tests/fixtures/fake_libcuda/fake_libcuda.c is a test stand-in for NVIDIA's libcuda.so.1 (see
its README): it lets the probe's success path (devices, compute capability, the memory round
trip) and its failure paths run on this GPU-less machine. The probe runs as a subprocess, as
it does on hosts, and its one JSON document is checked.
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
PROBE = REPO / "roles" / "gpu_doctor" / "files" / "tfgpu_cuda_probe.py"
FAKE_SOURCE = REPO / "tests" / "fixtures" / "fake_libcuda" / "fake_libcuda.c"


@pytest.fixture(scope="module")
def fake_libcuda(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is needed to build the fake libcuda test fixture")
    out = tmp_path_factory.mktemp("fake_libcuda") / "libcuda_fake.so.1"
    subprocess.run(
        [gcc, "-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o", str(out), str(FAKE_SOURCE)],
        check=True,
    )
    return out


def probe(library: Path | str, *args: str, **env: str) -> dict[str, object]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_CUDA_")}
    proc = subprocess.run(
        [sys.executable, str(PROBE), "--library", str(library), *args],
        capture_output=True,
        text=True,
        env={**environ, **env},
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, object] = json.loads(proc.stdout)
    assert doc["schema"] == "tfgpu-provision/cuda-probe/1"
    return doc


def test_two_devices_report_name_capability_memory_and_a_good_round_trip(
    fake_libcuda: Path,
) -> None:
    doc = probe(fake_libcuda, FAKE_CUDA_DEVICES="2", FAKE_CUDA_CC="9.0", FAKE_CUDA_DRIVER="12040")
    assert doc["status"] == "ok"
    assert doc["driver_version"] == 12040 and doc["driver_cuda_version"] == "12.4"
    assert doc["device_count"] == 2
    devices = doc["devices"]
    assert isinstance(devices, list)
    assert [d["compute_capability"] for d in devices] == ["9.0", "9.0"]
    assert devices[1]["name"] == "FAKE GPU 1 (test fixture)"
    assert devices[1]["pci_bus_id"] == "0000:11:00.0"
    assert devices[0]["total_memory_bytes"] == 16 << 30
    assert all(d["memcheck"]["ok"] for d in devices)
    assert doc["library"]["path"] == str(fake_libcuda)  # type: ignore[index]


def test_corrupted_copy_is_caught_by_comparing_bytes(fake_libcuda: Path) -> None:
    doc = probe(fake_libcuda, FAKE_CUDA_DEVICES="2", FAKE_CUDA_CORRUPT="1")
    assert doc["status"] == "device_errors"
    good, bad = doc["devices"]  # type: ignore[misc]
    assert good["memcheck"]["ok"] is True
    assert bad["memcheck"]["ok"] is False
    assert bad["memcheck"]["error"]["name"] == "DATA_MISMATCH"
    assert "1 of 1048576 bytes" in bad["memcheck"]["error"]["message"]


def test_allocation_failure_names_the_call_and_cuda_error(fake_libcuda: Path) -> None:
    doc = probe(fake_libcuda, FAKE_CUDA_ALLOC_FAIL="0")
    error = doc["devices"][0]["memcheck"]["error"]  # type: ignore[index]
    assert error["call"] == "cuMemAlloc_v2"
    assert error["name"] == "CUDA_ERROR_OUT_OF_MEMORY"
    assert doc["status"] == "device_errors"


def test_no_memcheck_skips_the_round_trip(fake_libcuda: Path) -> None:
    doc = probe(fake_libcuda, "--no-memcheck", FAKE_CUDA_CORRUPT="0")
    assert doc["status"] == "ok"
    assert doc["devices"][0]["memcheck"] is None  # type: ignore[index]


@pytest.mark.parametrize(
    ("code", "status", "name", "message"),
    [
        ("100", "no_device", "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"),
        ("802", "init_failed", "CUDA_ERROR_SYSTEM_NOT_READY", "system not yet initialized"),
        ("803", "init_failed", "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH", None),
        ("999", "init_failed", "CUDA_ERROR_UNKNOWN", None),
    ],
)
def test_cuinit_failures_become_statuses(
    fake_libcuda: Path, code: str, status: str, name: str, message: str | None
) -> None:
    doc = probe(fake_libcuda, FAKE_CUDA_INIT=code)
    assert doc["status"] == status
    init = doc["init"]
    assert isinstance(init, dict)
    assert init["code"] == int(code) and init["name"] == name
    if message:
        assert init["message"] == message
    assert doc["devices"] == []


def test_zero_devices_after_a_good_init_is_no_device(fake_libcuda: Path) -> None:
    doc = probe(fake_libcuda, FAKE_CUDA_DEVICES="0")
    assert doc["status"] == "no_device" and doc["device_count"] == 0


def test_missing_library_is_a_clean_no_libcuda_document(tmp_path: Path) -> None:
    doc = probe(tmp_path / "libcuda.so.1")
    assert doc["status"] == "no_libcuda"
    assert "cannot open shared object file" in str(doc["library"]["error"])  # type: ignore[index]
    assert doc["init"] is None and doc["devices"] == []


def test_a_library_without_cuinit_is_not_libcuda() -> None:
    libc = "libc.so.6"
    doc = probe(libc)
    assert doc["status"] == "no_libcuda"
    assert "no cuInit" in str(doc["library"]["error"])  # type: ignore[index]


def test_output_file_matches_stdout(fake_libcuda: Path, tmp_path: Path) -> None:
    target = tmp_path / "probe.json"
    doc = probe(fake_libcuda, "--output", str(target))
    assert json.loads(target.read_text()) == doc
