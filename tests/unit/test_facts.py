"""tfgpu_provision.facts on small synthetic inputs: edge cases the real captures do not cover."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tfgpu_provision import facts
from tfgpu_provision.facts import (
    GPU_DATA_PATH,
    SmiParseError,
    classify_smi_failure,
    host_facts_from_probe,
    lookup_gpu,
    normalize_bus_id,
    parse_lspci,
    parse_proc_driver_version,
    parse_smi_csv,
    parse_smi_xml,
    pci_id_from_smi,
)

DEBIAN_12 = (
    'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
    'VERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n'
)
ROCKY_9 = 'NAME="Rocky Linux"\nVERSION_ID="9.4"\nID="rocky"\nID_LIKE="rhel centos fedora"\n'
UBUNTU_2204 = 'NAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\nID_LIKE=debian\n'


def sysfs_device(address: str, device: str, pci_class: str) -> dict[str, Any]:
    return {"address": address, "vendor": "0x10de", "device": device, "class": pci_class}


# --------------------------------------------------------------------------- no NVIDIA at all


def test_host_without_any_nvidia_device() -> None:
    raw = {
        "lspci": {"path": "/usr/bin/lspci", "rc": 0, "stdout": "", "stderr": ""},
        "nvidia_smi": {"path": None, "xml": None, "csv": None},
        "proc_driver_version": None,
        "proc_modules": [],
        "os_release": DEBIAN_12,
        "arch": "x86_64",
    }
    result = host_facts_from_probe(raw)
    assert result["gpu_count"] == 0
    assert result["gpus"] == []
    assert result["driver"]["state"] == "absent"
    assert result["driver"]["loaded"] is False
    assert result["driver"]["version"] is None
    assert (result["nvswitch_count"], result["other_nvidia_functions"]) == (0, 0)
    assert result["source"] == "lspci"


def test_nothing_collected_at_all() -> None:
    result = host_facts_from_probe({})
    assert result["gpu_count"] == 0
    assert result["source"] == "none"
    assert result["driver"]["state"] == "absent"
    assert result["secure_boot"] == "unknown"
    assert result["python"] is None


# --------------------------------------------------------------------------- sysfs fallback


def test_sysfs_classes_separate_gpus_switches_and_other_functions() -> None:
    raw = {
        "lspci": {"path": None, "skipped": "lspci not installed", "rc": None},
        "sysfs_pci": {
            "devices": [
                sysfs_device("0000:07:00.0", "0x20b2", "0x030200"),
                sysfs_device("0000:0f:00.0", "0x20b2", "0x030200"),
                sysfs_device("0000:11:00.0", "0x1af1", "0x068000"),
                sysfs_device("0000:21:00.1", "0x2291", "0x040300"),
                sysfs_device("0000:21:00.2", "0x1ad8", "0x0c0330"),
            ]
        },
        "nvidia_smi": {"path": None},
    }
    result = host_facts_from_probe(raw)
    assert result["source"] == "sysfs"
    assert result["gpu_count"] == 2
    assert result["nvswitch_count"] == 1
    assert result["other_nvidia_functions"] == 2
    assert [g["bus_id"] for g in result["gpus"]] == ["0000:07:00.0", "0000:0f:00.0"]
    assert result["gpus"][0]["name"] == "A100 SXM4 80GB"
    assert result["gpus"][0]["compute_capability"] == "8.0"


def test_unknown_pci_id_gets_no_compute_capability() -> None:
    raw = {"sysfs_pci": {"devices": [sysfs_device("0000:01:00.0", "0xffff", "0x030000")]}}
    gpu = host_facts_from_probe(raw)["gpus"][0]
    assert gpu["pci_id"] == "10de:ffff"
    assert gpu["compute_capability"] is None
    assert gpu["name"] is None


def test_lspci_name_used_when_id_is_unknown() -> None:
    text = "0000:01:00.0 3D controller [0302]: NVIDIA Corporation GB999 [Future GPU] [10de:ffff]"
    gpu = host_facts_from_probe({"lspci": {"rc": 0, "stdout": text}})["gpus"][0]
    assert gpu["name"] == "Future GPU"
    assert gpu["compute_capability"] is None


# --------------------------------------------------------------------------- nvidia-smi + PCI


SMI_XML = """<?xml version="1.0" ?>
<nvidia_smi_log>
  <driver_version>535.54.03</driver_version>
  <cuda_version>12.2</cuda_version>
  <attached_gpus>2</attached_gpus>
  <gpu id="00000000:07:00.0">
    <product_name>NVIDIA A100-SXM4-80GB</product_name>
    <mig_mode><current_mig>Disabled</current_mig></mig_mode>
    <pci><pci_device_id>20B210DE</pci_device_id><pci_bus_id>00000000:07:00.0</pci_bus_id></pci>
    <fb_memory_usage><total>81920 MiB</total></fb_memory_usage>
  </gpu>
  <gpu id="00000000:0F:00.0">
    <product_name>NVIDIA A100-SXM4-80GB</product_name>
    <mig_mode><current_mig>Disabled</current_mig></mig_mode>
    <pci><pci_device_id>20B210DE</pci_device_id><pci_bus_id>00000000:0F:00.0</pci_bus_id></pci>
    <fb_memory_usage><total>81920 MiB</total></fb_memory_usage>
  </gpu>
</nvidia_smi_log>
"""
SMI_CSV = (
    "index, name, pci.bus_id, pci.device_id, driver_version, memory.total [MiB], compute_cap, "
    "mig.mode.current\n"
    "0, NVIDIA A100-SXM4-80GB, 00000000:07:00.0, 0x20B210DE, 535.54.03, 81920 MiB, 8.0, Disabled\n"
    "1, NVIDIA A100-SXM4-80GB, 00000000:0F:00.0, 0x20B210DE, 535.54.03, 81920 MiB, 8.0, Disabled\n"
)


def ok(text: str) -> dict[str, Any]:
    return {"rc": 0, "stdout": text, "stderr": "", "error": None}


def test_smi_is_authoritative_and_pci_still_counts_switches() -> None:
    raw = {
        "nvidia_smi": {"path": "/usr/bin/nvidia-smi", "xml": ok(SMI_XML), "csv": ok(SMI_CSV)},
        "sysfs_pci": {
            "devices": [
                sysfs_device("0000:07:00.0", "0x20b2", "0x030200"),
                sysfs_device("0000:0f:00.0", "0x20b2", "0x030200"),
                sysfs_device("0000:11:00.0", "0x1af1", "0x068000"),
            ]
        },
        "proc_modules": ["nvidia_uvm", "nvidia"],
    }
    result = host_facts_from_probe(raw)
    assert result["source"] == "nvidia-smi-xml"
    assert result["gpu_count"] == 2
    assert result["nvswitch_count"] == 1
    assert result["driver"] == {
        "version": "535.54.03",
        "cuda_version": "12.2",
        "loaded": True,
        "state": "ok",
        "message": None,
        "library_version": None,
    }
    assert result["gpus"][1] == {
        "index": 1,
        "name": "NVIDIA A100-SXM4-80GB",
        "pci_id": "10de:20b2",
        "bus_id": "0000:0f:00.0",
        "compute_capability": "8.0",
        "memory_mib": 81920,
        "mig_mode": "Disabled",
        "virtualization_mode": None,
    }
    assert result["notes"] == []


def test_csv_compute_capability_wins_over_the_table() -> None:
    # A made-up 9.9 proves the value comes from nvidia-smi, not from gpus.yaml's 8.0.
    csv_text = SMI_CSV.replace(", 8.0, Disabled\n1", ", 9.9, Disabled\n1")
    raw = {"nvidia_smi": {"path": "x", "xml": ok(SMI_XML), "csv": ok(csv_text)}}
    ccs = [g["compute_capability"] for g in host_facts_from_probe(raw)["gpus"]]
    assert ccs == ["9.9", "8.0"]


def test_csv_used_when_xml_fails() -> None:
    raw = {
        "nvidia_smi": {
            "path": "x",
            "xml": {"rc": 0, "stdout": "<nvidia_smi_log><gpu", "stderr": ""},
            "csv": ok(SMI_CSV),
        }
    }
    result = host_facts_from_probe(raw)
    assert result["source"] == "nvidia-smi-csv"
    assert result["gpu_count"] == 2
    assert result["driver"]["cuda_version"] is None  # the CSV query does not carry it


def test_smi_disagreeing_with_pci_is_noted() -> None:
    raw = {
        "nvidia_smi": {"path": "x", "xml": ok(SMI_XML)},
        "sysfs_pci": {
            "devices": [sysfs_device(f"0000:0{i}:00.0", "0x20b2", "0x030200") for i in range(3)]
        },
    }
    result = host_facts_from_probe(raw)
    assert result["gpu_count"] == 2
    assert "PCI lists 3 NVIDIA display controllers, nvidia-smi 2" in result["notes"]


def test_unparseable_smi_output_with_rc_zero_is_an_error() -> None:
    raw = {"nvidia_smi": {"path": "x", "xml": ok("garbage"), "csv": ok("garbage")}}
    driver = host_facts_from_probe(raw)["driver"]
    assert driver["state"] == "error"
    assert driver["message"] == "nvidia-smi output could not be parsed"


def test_smi_xml_with_zero_gpus_is_no_devices() -> None:
    empty = "<nvidia_smi_log><driver_version>550.1</driver_version></nvidia_smi_log>"
    driver = host_facts_from_probe({"nvidia_smi": {"path": "x", "xml": ok(empty)}})["driver"]
    assert (driver["state"], driver["version"]) == ("no_devices", "550.1")


def test_module_loaded_without_nvidia_smi_is_an_error_not_absent() -> None:
    raw = {"nvidia_smi": {"path": None}, "proc_modules": ["nvidia"]}
    driver = host_facts_from_probe(raw)["driver"]
    assert driver["state"] == "error"
    assert driver["loaded"] is True
    assert "nvidia-smi is not installed" in (driver["message"] or "")


def test_sandbox_capture_couldnt_communicate_exit_9() -> None:
    # ../shared/reference/sandbox-captures.md: Debian driver installed, no module, no device.
    text = (
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
        "Make sure that the latest NVIDIA driver is installed and running.\n"
    )
    raw = {"nvidia_smi": {"path": "/usr/bin/nvidia-smi", "xml": {"rc": 9, "stdout": text}}}
    result = host_facts_from_probe(raw)
    assert result["driver"]["state"] == "not_loaded"
    assert result["driver"]["loaded"] is False
    assert result["gpu_count"] == 0


# --------------------------------------------------------------------------- parsers


def test_classify_unknown_failure_keeps_first_line() -> None:
    failure = classify_smi_failure("\nUnable to determine the device handle\nmore\n", 15)
    assert failure == {
        "state": "error",
        "message": "Unable to determine the device handle",
        "library_version": None,
    }
    assert classify_smi_failure("", 3)["message"] == "nvidia-smi exited 3 without output"
    assert classify_smi_failure("fine", 0)["state"] == "ok"


def test_parse_smi_xml_rejects_other_documents() -> None:
    with pytest.raises(SmiParseError):
        parse_smi_xml("<html></html>")
    with pytest.raises(SmiParseError):
        parse_smi_xml("Failed to initialize NVML: Driver/library version mismatch")


def test_parse_smi_csv_rejects_failure_text_and_ragged_rows() -> None:
    with pytest.raises(SmiParseError):
        parse_smi_csv("Failed to initialize NVML: Driver/library version mismatch\n")
    with pytest.raises(SmiParseError):
        parse_smi_csv("")
    with pytest.raises(SmiParseError):
        parse_smi_csv("index, name\n0, a, b\n")
    with pytest.raises(SmiParseError):
        parse_smi_csv("index, name\n")  # a header alone is not a GPU list


def test_parse_smi_csv_without_index_numbers_rows() -> None:
    report = parse_smi_csv("name, memory.total [MiB]\nA, 100 MiB\nB, [N/A]\n")
    assert [(g["index"], g["name"], g["memory_mib"]) for g in report["gpus"]] == [
        (0, "A", 100),
        (1, "B", None),
    ]


def test_parse_lspci_without_domain_and_with_brackets_in_name() -> None:
    text = (
        "01:00.0 VGA compatible controller [0300]: NVIDIA Corporation TU104 [GeForce RTX 2080 "
        "SUPER] [10de:1e81] (rev a1) (prog-if 00 [VGA controller])\n"
        "\tSubsystem: Gigabyte Technology Co., Ltd Device [1458:4001]\n"
        "\tKernel driver in use: nouveau\n"
        "not an lspci line\n"
    )
    (function,) = parse_lspci(text)
    assert function == {
        "bus_id": "0000:01:00.0",
        "class_code": "0300",
        "vendor_id": "10de",
        "device_id": "1e81",
        "description": "NVIDIA Corporation TU104 [GeForce RTX 2080 SUPER]",
        "kernel_driver": "nouveau",
    }


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("00000000:00:0D.0", "0000:00:0d.0"),
        ("01:00.0", "0000:01:00.0"),
        ("000e:00:00.0", "000e:00:00.0"),
        ("0000:C1:00.0", "0000:c1:00.0"),
        ("N/A", None),
    ],
)
def test_normalize_bus_id(given: str, expected: str | None) -> None:
    assert normalize_bus_id(given) == expected


def test_pci_id_from_smi() -> None:
    assert pci_id_from_smi("20B210DE") == "10de:20b2"
    assert pci_id_from_smi("0x233010DE") == "10de:2330"
    assert pci_id_from_smi("N/A") is None
    assert pci_id_from_smi("20B2") is None


def test_parse_proc_driver_version() -> None:
    closed = (
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.54.03  Tue Jun  6 22:20:39 UTC 2023"
    )
    open_p2p = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.124.06-p2p  Release"
    assert parse_proc_driver_version(closed) == "535.54.03"
    assert parse_proc_driver_version(open_p2p) == "570.124.06"
    assert parse_proc_driver_version("GCC version: 12") is None
    assert parse_proc_driver_version(None) is None


# --------------------------------------------------------------------------- host side facts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (DEBIAN_12, {"family": "Debian", "distribution": "Debian", "version": "12"}),
        (UBUNTU_2204, {"family": "Debian", "distribution": "Ubuntu", "version": "22.04"}),
        (ROCKY_9, {"family": "RedHat", "distribution": "Rocky", "version": "9.4"}),
    ],
)
def test_os_facts(text: str, expected: dict[str, str]) -> None:
    result = host_facts_from_probe({"os_release": text, "arch": "x86_64"})["os"]
    assert result == {**expected, "arch": "x86_64"}


@pytest.mark.parametrize(
    ("secure_boot", "expected"),
    [
        ({"mokutil": {"rc": 0, "stdout": "SecureBoot enabled\n"}, "efi": True}, "enabled"),
        ({"mokutil": {"rc": 0, "stdout": "SecureBoot disabled\n"}, "efi": True}, "disabled"),
        (
            {"mokutil": {"rc": 255, "stderr": "EFI variables are not supported on this system"}},
            "disabled",
        ),
        ({"mokutil": None, "efi": True, "efivar": 1}, "enabled"),
        ({"mokutil": None, "efi": True, "efivar": 0}, "disabled"),
        ({"mokutil": None, "efi": False, "efivar": None}, "disabled"),
        ({"mokutil": None, "efi": True, "efivar": None}, "unknown"),
    ],
)
def test_secure_boot(secure_boot: dict[str, Any], expected: str) -> None:
    assert host_facts_from_probe({"secure_boot": secure_boot})["secure_boot"] == expected


def test_kernel_python_locks_disk_and_modules() -> None:
    raw = {
        "kernel": {
            "release": "6.1.0-18-amd64",
            "build_dir": "/lib/modules/x/build",
            "headers": False,
        },
        "python": {
            "version": "3.11.7",
            "executable": "/usr/libexec/platform-python",
            "system_python3": {"path": "/usr/bin/python3", "version": "3.11.2"},
        },
        "locks": {
            "method": "fuser",
            "holders": [{"path": "/var/lib/dpkg/lock-frontend", "pid": 812, "command": "apt-get"}],
        },
        "disk": {"target": {"requested": "/opt/tfgpu", "path": "/opt", "free_bytes": 123}},
        "proc_modules": ["nouveau"],
    }
    result = host_facts_from_probe(raw)
    assert result["kernel"] == {"release": "6.1.0-18-amd64", "headers": False}
    assert result["python"] == "3.11.2"  # the system python3 builds the venv
    assert result["locks"] == [
        {"path": "/var/lib/dpkg/lock-frontend", "pid": 812, "command": "apt-get"}
    ]
    assert result["disk"] == {"path": "/opt", "free_bytes": 123}
    assert result["modules"] == {"nvidia": False, "nouveau": True}


# --------------------------------------------------------------------------- gpus.yaml


def test_every_gpu_row_is_complete_and_sourced() -> None:
    data = yaml.safe_load(GPU_DATA_PATH.read_text(encoding="utf-8"))
    assert data["gpus"], "gpus.yaml has no rows"
    for device_id, row in data["gpus"].items():
        assert re.fullmatch(r"[0-9a-f]{4}", str(device_id)), device_id
        assert re.fullmatch(r"\d{1,2}\.\d", str(row["cc"])), (device_id, row["cc"])
        assert row["name"], device_id
        # the row says where its id/name and its cc come from, using the file's source keys
        assert "id" in row["source"] and "cc" in row["source"], (device_id, row["source"])
        assert any(key in row["source"] for key in data["sources"]), (device_id, row["source"])
    for device_id in data["nvswitches"]:
        assert device_id not in data["gpus"], f"{device_id} is both a GPU and an NVSwitch"


def test_lookup_by_id_then_by_exact_name() -> None:
    assert lookup_gpu("10de:1df6") is not None
    by_name = lookup_gpu(None, "Tesla V100S-PCIE-32GB")
    assert by_name is not None and by_name["pci_id"] == "10de:1df6"
    assert lookup_gpu(None, "NVIDIA H100 80GB HBM3") == lookup_gpu("10de:2330")
    # near names are not matches: a Ti is not the plain card
    assert lookup_gpu(None, "NVIDIA GeForce RTX 4090 Ti") is None
    assert lookup_gpu("10de:0000", None) is None
    assert len(facts.gpu_models()) == len(yaml.safe_load(GPU_DATA_PATH.read_text())["gpus"])


def test_installed_layers_from_packages_trees_and_env_state() -> None:
    installed = facts.installed_facts(
        {
            "packages": [
                {"name": "nvidia-driver", "version": "535.261.03-1~deb12u1"},
                {"name": "libcuda1", "version": "535.261.03-1~deb12u1"},
                {"name": "cuda-toolkit-12-5", "version": "12.5.1-1"},
                {"name": "nvidia-cuda-toolkit", "version": "11.8.89~11.8.0-5~deb12u1"},
                {"name": "libcudnn8", "version": "8.9.7.29-1+cuda12.2"},
            ],
            "cuda_toolkits": [
                {"path": "/usr/local/cuda-12.5", "version_json": '{"cuda": {"version": "12.5.1"}}'},
                {
                    "path": "/usr/local/cuda-12.2",
                    "version_json": '{"cuda": {"version": "12.2.140"}}',
                },
                {"path": "/usr/local/cuda-9.9", "version_json": "not json"},
            ],
            "tf_envs": [
                {"path": "/opt/tfgpu/envs/tf-gpu-abc", "state": '{"tensorflow": "2.21.0"}'}
            ],
        }
    )
    assert [p["name"] for p in installed["driver_packages"]] == ["nvidia-driver", "libcuda1"]
    assert [t["version"] for t in installed["cuda_toolkits"]] == ["12.5", "11.8", "12.2"]
    assert installed["cudnn"] == [{"name": "libcudnn8", "version": "8.9.7.29-1+cuda12.2"}]
    assert installed["tf_envs"][0]["state"]["tensorflow"] == "2.21.0"


def test_installed_layers_tolerate_junk() -> None:
    assert facts.installed_facts(None) == {
        "driver_packages": [],
        "cuda_toolkits": [],
        "cudnn": [],
        "tf_envs": [],
    }
    assert (
        facts.installed_facts(
            {"packages": ["x", {"name": "cudnn9"}], "tf_envs": [{"state": "[1]"}]}
        )["cudnn"]
        == []
    )
