"""The doctor's rules: each failure signature / fact combination -> the top-ranked finding.

Evidence documents are built here the way the gpu_doctor role writes them (preflight summary,
CUDA probe, system state, TensorFlow probe); :func:`evidence` starts from a healthy 2-GPU host
and each test breaks one thing. The last tests feed real nvidia-smi failure captures from
``../shared/reference/gpu-captures`` (read in place) through the real facts parser.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

from tfgpu_provision import facts
from tfgpu_provision.doctor import report, rules
from tfgpu_provision.doctor.evidence import EVIDENCE_SCHEMA, from_document

CAPTURES = Path(
    os.environ.get("TFGPU_GPU_CAPTURES")
    or Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "gpu-captures"
)
PROC_VERSION = (
    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  {v}  Release Build  (dvs-builder@U16)\n"
    "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
)


def _gpu(index: int, cc: str = "8.0", name: str = "NVIDIA A100-SXM4-80GB") -> dict[str, Any]:
    return {"index": index, "name": name, "pci_id": "10de:20b2", "compute_capability": cc}


def healthy() -> dict[str, Any]:
    """A healthy host: 2 A100s, driver 550 loaded, TensorFlow 2.21 sees both GPUs."""
    return {
        "schema": EVIDENCE_SCHEMA,
        "host": "node1",
        "preflight": {
            "host": {
                "gpus": [_gpu(0), _gpu(1)],
                "gpu_count": 2,
                "nvswitch_count": 0,
                "secure_boot": "disabled",
                "kernel": {"release": "6.1.0-28-amd64", "headers": True},
                "driver": {
                    "version": "550.163.01",
                    "loaded": True,
                    "state": "ok",
                    "message": None,
                    "library_version": None,
                },
                "modules": {"nvidia": True, "nouveau": False},
                "installed": {
                    "driver_packages": [
                        {"name": "nvidia-driver", "version": "550.163.01-2"},
                        {"name": "libcuda1", "version": "550.163.01-2"},
                    ]
                },
                "source": "nvidia-smi-xml",
            },
            "resolution": {
                "stack": {
                    "tensorflow": "2.21.0",
                    "cuda": "12.5",
                    "cudnn": "9.3",
                    "wheel_compute_capabilities": [
                        "sm_60",
                        "sm_70",
                        "sm_80",
                        "sm_89",
                        "compute_90",
                    ],
                    "driver": {"minimum": "525.60.13"},
                    "pip_requirement": "tensorflow[and-cuda]==2.21.0",
                }
            },
        },
        "preflight_error": None,
        "cuda_probe": {
            "status": "ok",
            "library": {"path": "/usr/lib/x86_64-linux-gnu/libcuda.so.1", "version": "550.163.01"},
            "init": {"code": 0, "name": "CUDA_SUCCESS", "message": None},
            "driver_cuda_version": "12.4",
            "device_count": 2,
            "devices": [
                {
                    "index": i,
                    "name": "NVIDIA A100-SXM4-80GB",
                    "compute_capability": "8.0",
                    "errors": [],
                    "memcheck": {"ok": True, "error": None},
                }
                for i in range(2)
            ],
        },
        "system": {
            "proc_driver_nvidia": True,
            "proc_driver_version": PROC_VERSION.format(v="550.163.01"),
            "modules": ["nvidia", "nvidia_modeset", "nvidia_uvm"],
            "dkms_status": {
                "stdout": "nvidia-current/550.163.01, 6.1.0-28-amd64, x86_64: installed"
            },
            "libcuda_files": ["/usr/lib/x86_64-linux-gnu/libcuda.so.550.163.01"],
            "modprobe_blacklists": [{"file": "/etc/modprobe.d/nvidia.conf", "module": "nouveau"}],
            "env_wrapper": {
                "path": "/usr/local/bin/tfgpu-env",
                "exists": True,
                "cuda_visible_devices": None,
            },
            "etc_environment_cuda_visible_devices": None,
            "session_cuda_visible_devices": None,
            "persistence_mode": [{"index": 0, "mode": "Enabled"}, {"index": 1, "mode": "Enabled"}],
            "fabricmanager": {"active": "inactive", "enabled": "disabled"},
            "kernel_log": {"readable": True, "reason": None, "lines": []},
            "dev_nvidia": ["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl"],
        },
        "tensorflow": {
            "rc": 0,
            "timed_out": False,
            "result": {
                "version": "2.21.0",
                "built_with_cuda": True,
                "build_info": {
                    "cuda_version": "12.5.1",
                    "cudnn_version": "9",
                    "cuda_compute_capabilities": ["sm_60", "sm_70", "sm_80", "sm_89", "compute_90"],
                },
                "gpus": [{"name": "/physical_device:GPU:0"}, {"name": "/physical_device:GPU:1"}],
                "gpu_conv_ok": True,
                "packages": {"tensorflow": "2.21.0", "nvidia-cudnn-cu12": "9.3.0.75"},
                "cudnn_runtime_version": "9.3.0",
                "environment": {"CUDA_VISIBLE_DEVICES": None, "LD_LIBRARY_PATH": None},
            },
            "libraries": {"libcudnn.so.9": {"loaded": True, "error": None}},
            "log": [],
        },
        "tensorflow_skipped": None,
    }


def sandbox_driver_no_module() -> dict[str, Any]:
    """What the Debian 12 sandbox node shows: driver packages, no module, no GPU (captured)."""
    doc = healthy()
    host = doc["preflight"]["host"]
    host.update(gpus=[], gpu_count=0, kernel={"release": "6.1.0-28-amd64", "headers": False})
    host["driver"] = {
        "version": None,
        "loaded": False,
        "state": "not_loaded",
        "message": "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA "
        "driver. Make sure that the latest NVIDIA driver is installed and running.",
    }
    host["installed"]["driver_packages"] = [
        {"name": "nvidia-driver", "version": "535.261.03-1~deb12u1"},
        {"name": "libcuda1", "version": "535.261.03-1~deb12u1"},
    ]
    host["modules"] = {"nvidia": False, "nouveau": False}
    doc["cuda_probe"] = {
        "status": "no_device",
        "library": {
            "path": "/usr/lib/x86_64-linux-gnu/libcuda.so.535.261.03",
            "version": "535.261.03",
        },
        "init": {
            "code": 100,
            "name": "CUDA_ERROR_NO_DEVICE",
            "message": "no CUDA-capable device is detected",
        },
        "driver_cuda_version": "12.2",
        "device_count": 0,
        "devices": [],
    }
    doc["system"].update(
        proc_driver_nvidia=False,
        proc_driver_version=None,
        modules=[],
        dkms_status={"stdout": "nvidia-current/535.261.03: added\n"},
        persistence_mode=None,
        dev_nvidia=[],
    )
    doc["tensorflow"] = None
    doc["tensorflow_skipped"] = "no TensorFlow env on this host"
    return doc


def top(doc: dict[str, Any]) -> rules.Finding:
    found = rules.diagnose(from_document(doc))
    assert found, "expected at least one finding"
    return found[0]


def ids(doc: dict[str, Any]) -> list[str]:
    return [f.id for f in rules.diagnose(from_document(doc))]


# --------------------------------------------------------------------------- the rules data


def test_every_rule_names_a_check_and_renders_without_placeholders_left() -> None:
    loaded = rules.load_rules()
    assert len({r.id for r in loaded}) == len(loaded)
    assert {r.check for r in loaded} == set(rules.CHECKS)


def test_healthy_host_has_no_finding_and_exits_0() -> None:
    result = report.examine(from_document(healthy()))
    assert result.findings == []
    assert result.status == "healthy"
    assert result.exit_code == 0


# --------------------------------------------------------------------------- no device / module


def test_no_nvidia_device_says_so_and_stops() -> None:
    doc = sandbox_driver_no_module()
    doc["preflight"]["host"]["installed"]["driver_packages"] = []
    doc["preflight"]["host"]["driver"] = {"state": "absent", "loaded": False}
    doc["cuda_probe"] = {"status": "no_libcuda", "library": {"error": "cannot open"}}
    doc["system"]["libcuda_files"] = []
    doc["system"]["kernel_log"]["lines"] = ["Lockdown: modprobe: unsigned module loading"]
    result = report.examine(from_document(doc))
    assert [f.id for f in result.findings] == ["no_nvidia_device"]
    assert result.status == "no_device"
    assert result.exit_code == 1


def test_driver_packages_without_module_or_gpu_rank_module_not_loaded_first() -> None:
    finding = top(sandbox_driver_no_module())
    assert finding.id == "module_not_loaded"
    assert finding.title == "Kernel module not loaded / no device"
    text = "\n".join(finding.evidence)
    assert "nvidia-driver 535.261.03-1~deb12u1" in text
    assert "couldn't communicate" in text
    assert "CUDA_ERROR_NO_DEVICE" in text
    assert "dkms status: nvidia-current/535.261.03: added" in text
    assert "linux-headers-6.1.0-28-amd64" in finding.fix
    assert "dkms autoinstall" in finding.fix
    assert "lspci -nn -d 10de:" in finding.fix
    assert "modprobe nvidia" in finding.fix


def test_the_boot_lockdown_notice_alone_is_not_secure_boot_evidence() -> None:
    doc = sandbox_driver_no_module()
    doc["system"]["kernel_log"]["lines"] = [
        "[0.108153] Kernel is locked down from Kernel configuration; see man kernel_lockdown.7",
        "[0.263101] LSM: initializing lsm=lockdown,capability,landlock,bpf",
    ]
    assert "secure_boot_blocks_module" not in ids(doc)


def test_gpu_without_any_driver_ranks_driver_missing() -> None:
    doc = sandbox_driver_no_module()
    doc["preflight"]["host"].update(gpus=[_gpu(0)], gpu_count=1)
    doc["preflight"]["host"]["installed"]["driver_packages"] = []
    doc["preflight"]["host"]["driver"] = {"state": "absent", "loaded": False}
    doc["cuda_probe"] = {"status": "no_libcuda", "library": {"error": "cannot open"}}
    doc["system"]["libcuda_files"] = []
    finding = top(doc)
    assert finding.id == "driver_missing"
    assert "525.60.13" in finding.fix


def test_secure_boot_enabled_with_module_missing_ranks_above_the_generic_module_rule() -> None:
    doc = sandbox_driver_no_module()
    doc["preflight"]["host"]["secure_boot"] = "enabled"
    doc["preflight"]["host"].update(gpus=[_gpu(0)], gpu_count=1)
    assert ids(doc)[:2] == ["secure_boot_blocks_module", "module_not_loaded"]
    assert "mokutil --import" in top(doc).fix


def test_module_signature_rejection_in_kernel_log_is_secure_boot_even_if_state_unknown() -> None:
    doc = sandbox_driver_no_module()
    doc["preflight"]["host"]["secure_boot"] = "unknown"
    doc["system"]["kernel_log"]["lines"] = [
        "[   12.3] Loading of unsigned module is rejected",
        "[   12.4] nvidia: module verification failed: signature and/or required key missing",
    ]
    finding = top(doc)
    assert finding.id == "secure_boot_blocks_module"
    assert any("module verification failed" in line for line in finding.evidence)


def test_nouveau_loaded_ranks_first_and_notes_an_ignored_blacklist() -> None:
    doc = sandbox_driver_no_module()
    doc["preflight"]["host"].update(gpus=[_gpu(0)], gpu_count=1)
    doc["system"]["modules"] = ["nouveau"]
    finding = top(doc)
    assert finding.id == "nouveau_loaded"
    assert "/etc/modprobe.d/nvidia.conf" in finding.fix  # blacklist exists: initramfs/reboot
    doc["system"]["modprobe_blacklists"] = []
    assert "A blacklist entry exists" not in top(doc).fix


# --------------------------------------------------------------------------- driver versions


def test_nvml_mismatch_ranks_version_mismatch_first() -> None:
    doc = healthy()
    doc["preflight"]["host"]["driver"].update(
        state="version_mismatch",
        message="Failed to initialize NVML: Driver/library version mismatch",
    )
    doc["cuda_probe"].update(
        status="init_failed",
        devices=[],
        init={"code": 803, "name": "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH", "message": None},
    )
    doc["cuda_probe"]["library"]["version"] = "570.124.06"
    finding = top(doc)
    assert finding.id == "version_mismatch"
    assert "570.124.06" in finding.cause and "550.163.01" in finding.cause
    assert "Reboot" in finding.fix


def test_library_newer_than_loaded_module_is_a_mismatch_even_when_nvidia_smi_is_silent() -> None:
    doc = healthy()
    doc["cuda_probe"]["library"]["version"] = "560.35.03"
    assert top(doc).id == "version_mismatch"


def test_driver_older_than_the_cuda_minimum() -> None:
    doc = healthy()
    doc["preflight"]["host"]["driver"]["version"] = "470.256.02"
    doc["system"]["proc_driver_version"] = PROC_VERSION.format(v="470.256.02")
    doc["cuda_probe"]["library"]["version"] = "470.256.02"
    doc["cuda_probe"]["driver_cuda_version"] = "11.4"
    finding = top(doc)
    assert finding.id == "driver_below_cuda_minimum"
    assert "525.60.13" in finding.cause
    assert any("CUDA 11.4" in line for line in finding.evidence)


def test_fabric_manager_missing_on_nvswitch_host_with_error_802() -> None:
    doc = healthy()
    doc["preflight"]["host"]["nvswitch_count"] = 6
    doc["cuda_probe"].update(
        status="init_failed",
        devices=[],
        init={
            "code": 802,
            "name": "CUDA_ERROR_SYSTEM_NOT_READY",
            "message": "system not yet initialized",
        },
    )
    finding = top(doc)
    assert finding.id == "fabric_manager_missing"
    assert "systemctl enable --now nvidia-fabricmanager" in finding.fix
    assert "550.163.01" in finding.fix


def test_nvswitches_without_fabric_manager_fire_even_before_cuda_fails() -> None:
    doc = healthy()
    doc["preflight"]["host"]["nvswitch_count"] = 6
    assert "fabric_manager_missing" in ids(doc)
    doc["system"]["fabricmanager"]["active"] = "active"
    assert "fabric_manager_missing" not in ids(doc)


def test_driver_installed_without_libcuda() -> None:
    doc = healthy()
    doc["cuda_probe"] = {
        "status": "no_libcuda",
        "library": {"error": "libcuda.so.1: cannot open shared object file: No such file"},
    }
    doc["system"]["libcuda_files"] = []
    finding = top(doc)
    assert finding.id == "libcuda_missing"
    assert "apt-get install libcuda1" in finding.fix


def test_other_cuinit_errors_with_module_loaded_point_at_the_kernel_log() -> None:
    doc = healthy()
    doc["cuda_probe"].update(
        status="init_failed",
        devices=[],
        init={"code": 999, "name": "CUDA_ERROR_UNKNOWN", "message": None},
    )
    doc["system"]["dev_nvidia"] = []
    doc["system"]["kernel_log"]["lines"] = ["NVRM: GPU 0000:10:00.0: RmInitAdapter failed!"]
    finding = top(doc)
    assert finding.id == "cuda_init_failed"
    assert "nvidia-modprobe" in finding.fix
    assert any("RmInitAdapter" in line for line in finding.evidence)


# --------------------------------------------------------------------------- env / TensorFlow


@pytest.mark.parametrize(
    ("value", "visible"), [("", 0), ("-1", 0), ("0", 1), ("0,7,1", 1), ("GPU-xyz", 1)]
)
def test_cuda_visible_devices_in_the_wrapper_hides_gpus(value: str, visible: int) -> None:
    doc = healthy()
    doc["system"]["env_wrapper"]["cuda_visible_devices"] = value
    doc["tensorflow"]["result"]["gpus"] = doc["tensorflow"]["result"]["gpus"][:visible]
    finding = top(doc)
    assert finding.id == "cuda_visible_devices_hides_gpus"
    assert f"leaves {visible} of the host's 2 GPU(s)" in finding.cause
    assert "/usr/local/bin/tfgpu-env" in finding.fix
    assert "0,1" in finding.fix


def test_cuda_visible_devices_listing_every_gpu_is_fine() -> None:
    doc = healthy()
    doc["system"]["session_cuda_visible_devices"] = "1,0"
    assert ids(doc) == []


def test_cpu_only_tensorflow_build() -> None:
    doc = healthy()
    doc["tensorflow"]["result"].update(built_with_cuda=False, gpus=[])
    finding = top(doc)
    assert finding.id == "tensorflow_cpu_build"
    assert "tensorflow[and-cuda]==2.21.0" in finding.fix


def test_library_tensorflow_could_not_load() -> None:
    doc = healthy()
    doc["tensorflow"]["libraries"] = {
        "libcudnn.so.9": {
            "loaded": False,
            "error": "libcudnn.so.9: cannot open shared object file: No such file or directory",
        }
    }
    doc["tensorflow"]["result"].update(gpus=[], packages={"tensorflow": "2.21.0"})
    del doc["tensorflow"]["result"]["cudnn_runtime_version"]
    finding = top(doc)
    assert finding.id == "library_not_loaded"
    assert "libcudnn.so.9" in finding.cause
    assert "tensorflow[and-cuda]==2.21.0" in finding.fix
    assert "LD_LIBRARY_PATH" not in finding.fix  # no wheels: plain install advice


def test_library_not_found_although_wheels_are_installed_blames_the_search_path() -> None:
    doc = healthy()
    doc["tensorflow"]["libraries"] = {"libcublas.so.12": {"loaded": False, "error": "not found"}}
    doc["tensorflow"]["result"]["environment"]["LD_LIBRARY_PATH"] = "/usr/local/cuda-11.8/lib64"
    doc["tensorflow"]["result"]["packages"]["nvidia-cublas-cu12"] = "12.5.3.2"
    finding = top(doc)
    assert finding.id == "library_not_loaded"
    assert "LD_LIBRARY_PATH=/usr/local/cuda-11.8/lib64" in finding.fix


@pytest.mark.parametrize(
    ("runtime", "fires"), [("9.1.0", True), ("8.9.7", True), ("9.3.0", False), ("9.5.1", False)]
)
def test_cudnn_major_and_minor_against_the_build(runtime: str, fires: bool) -> None:
    doc = healthy()
    doc["tensorflow"]["result"]["cudnn_runtime_version"] = runtime
    if fires:
        finding = top(doc)
        assert finding.id == "cudnn_version_mismatch"
        assert runtime in finding.cause and "9.3" in finding.cause
        assert "nvidia-cudnn-cu12>=9.3,<10" in finding.fix
    else:
        assert "cudnn_version_mismatch" not in ids(doc)


def test_memory_round_trip_failure() -> None:
    doc = healthy()
    doc["cuda_probe"]["status"] = "device_errors"
    doc["cuda_probe"]["devices"][1]["memcheck"] = {
        "ok": False,
        "error": {
            "call": "cuMemcpyDtoH_v2",
            "name": "DATA_MISMATCH",
            "message": "12 of 1048576 bytes came back different",
        },
    }
    doc["system"]["kernel_log"]["lines"] = ["NVRM: Xid (PCI:0000:11:00): 48, pid=1, DBE"]
    finding = top(doc)
    assert finding.id == "device_memcheck_failed"
    assert "GPU 1" in finding.cause
    assert any("Xid" in line for line in finding.evidence)


@pytest.mark.parametrize("cc", ["9.0", "10.0"])
def test_gpu_newer_than_the_wheels_native_code_warns_about_ptx_jit(cc: str) -> None:
    doc = healthy()
    for dev in doc["cuda_probe"]["devices"]:
        dev["compute_capability"] = cc
    result = report.examine(from_document(doc))
    assert [f.id for f in result.findings] == ["ptx_jit"]
    assert "compute_90" in result.findings[0].cause
    assert result.status == "warnings" and result.exit_code == 0


def test_gpu_older_than_every_wheel_target_is_an_error() -> None:
    doc = healthy()
    for dev in doc["cuda_probe"]["devices"]:
        dev["compute_capability"] = "5.2"
    assert top(doc).id == "arch_not_in_wheel"


def test_fewer_tensorflow_gpus_is_reported_only_when_nothing_else_explains_it() -> None:
    doc = healthy()
    doc["tensorflow"]["result"]["gpus"] = doc["tensorflow"]["result"]["gpus"][:1]
    doc["tensorflow"]["log"] = ["W gpu_device.cc: something odd"]
    assert ids(doc) == ["tensorflow_sees_fewer_gpus"]
    doc["system"]["env_wrapper"]["cuda_visible_devices"] = "0"
    assert ids(doc) == ["cuda_visible_devices_hides_gpus"]


def test_persistence_mode_off_is_information_only() -> None:
    doc = healthy()
    doc["system"]["persistence_mode"][1]["mode"] = "Disabled"
    result = report.examine(from_document(doc))
    assert [(f.id, f.severity) for f in result.findings] == [("persistence_mode_off", "info")]
    assert result.exit_code == 0


def test_errors_rank_before_warnings_whatever_their_likelihood() -> None:
    doc = healthy()
    for dev in doc["cuda_probe"]["devices"]:
        dev["compute_capability"] = "9.0"  # ptx_jit: warning, likelihood 60
    doc["preflight"]["host"]["nvswitch_count"] = 6  # fabric manager: error
    doc["system"]["persistence_mode"][0]["mode"] = "Disabled"
    assert ids(doc) == ["fabric_manager_missing", "ptx_jit", "persistence_mode_off"]


# --------------------------------------------------------------------------- real captures


def _from_capture(
    name: str, rc: int, modules: list[str], proc_version: str | None
) -> dict[str, Any]:
    text = (CAPTURES / name).read_text(encoding="utf-8")
    raw = {
        "nvidia_smi": {"path": "/usr/bin/nvidia-smi", "xml": {"rc": rc, "stdout": text}},
        "proc_modules": modules,
        "proc_driver_version": proc_version,
        "sysfs_pci": {
            "devices": [
                {
                    "address": "0000:01:00.0",
                    "vendor": "0x10de",
                    "device": "0x2684",
                    "class": "0x030000",
                }
            ]
        },
        "installed": {"packages": [{"name": "nvidia-driver", "version": "1"}]},
    }
    doc = copy.deepcopy(healthy())
    doc["preflight"]["host"] = dict(facts.host_facts_from_probe(raw))
    doc["system"].update(
        modules=modules, proc_driver_nvidia=bool(proc_version), proc_driver_version=proc_version
    )
    doc["cuda_probe"] = {
        "status": "no_device",
        "init": {"code": 100, "name": "CUDA_ERROR_NO_DEVICE"},
        "library": {"version": None},
        "devices": [],
    }
    doc["system"]["libcuda_files"] = []
    doc["tensorflow"] = None
    return doc


needs_captures = pytest.mark.skipif(not CAPTURES.is_dir(), reason=f"no captures at {CAPTURES}")


@needs_captures
def test_capture_nvml_mismatch_gives_version_mismatch() -> None:
    doc = _from_capture(
        "smi_fail_nvml_mismatch_570.124_tinygrad-ogkm-issue47.txt",
        18,
        ["nvidia"],
        PROC_VERSION.format(v="565.57.01"),
    )
    finding = top(doc)
    assert finding.id == "version_mismatch"
    assert any("Driver/library version mismatch" in line for line in finding.evidence)


@needs_captures
def test_capture_couldnt_communicate_gives_module_not_loaded() -> None:
    doc = _from_capture("smi_fail_couldnt_communicate_shine-cluster-issue50.txt", 9, [], None)
    finding = top(doc)
    assert finding.id == "module_not_loaded"
    assert any("couldn't communicate" in line for line in finding.evidence)
    assert "lspci" not in finding.fix  # the GPU is on the bus here
