"""tfgpu_provision.facts against real outputs captured on real machines.

The captures live in ``../shared/reference/gpu-captures`` (next to the checkout) and are read in
place: they are other projects' files, never copied here. SOURCES.md in that folder names the
origin (repository, path, commit or issue) of every file used below. Set TFGPU_GPU_CAPTURES to
read them from elsewhere.

Every file in the folder must have a case in EXPECTED, so a new capture without a test fails.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tfgpu_provision.facts import (
    classify_smi_failure,
    host_facts_from_probe,
    parse_lspci,
    parse_smi_csv,
    parse_smi_xml,
)

CAPTURES = Path(
    os.environ.get("TFGPU_GPU_CAPTURES")
    or Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "gpu-captures"
)
NOT_CAPTURES = {"SOURCES.md"}

pytestmark = pytest.mark.skipif(
    not CAPTURES.is_dir(),
    reason=(
        f"gpu-captures folder not found at {CAPTURES}; "
        "these tests run in CI where ../shared is present"
    ),
)


@dataclass(frozen=True)
class Expect:
    gpu_count: int
    driver_state: str = "ok"
    driver_version: str | None = None
    cuda_version: str | None = None
    names: tuple[str | None, ...] = ()  # every GPU's name, in order
    cc: tuple[str | None, ...] = ()  # every GPU's compute capability, in order
    pci_id: str | None = None  # of the first GPU
    memory_mib: int | None = None  # of the first GPU
    mig_mode: str | None = None  # of the first GPU
    virtualization_mode: str | None = None  # of the first GPU
    nvswitch_count: int = 0
    other_nvidia_functions: int = 0
    attached_gpus: int | None = None
    message: str | None = None
    library_version: str | None = None


MISMATCH = "Failed to initialize NVML: Driver/library version mismatch"
NOT_LOADED = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running."
)

# Truths read off each capture by hand (and its row in SOURCES.md), not off the parser.
EXPECTED: dict[str, Expect] = {
    # ---- nvidia-smi -q -x
    "smi_xml_8xTeslaV100S-PCIE-32GB_driver460.73.01.xml": Expect(
        gpu_count=8,
        driver_version="460.73.01",
        cuda_version="11.2",
        names=("Tesla V100S-PCIE-32GB",) * 8,
        cc=("7.0",) * 8,
        pci_id="10de:1df6",
        memory_mib=32510,
        virtualization_mode="Pass-Through",
        attached_gpus=8,
    ),
    "smi_xml_1xA100-SXM4-40GB_MIG_driver510.47.03.xml": Expect(
        gpu_count=1,
        driver_version="510.47.03",
        cuda_version="11.6",
        names=("NVIDIA A100-SXM4-40GB",),
        cc=("8.0",),
        pci_id="10de:20b0",
        memory_mib=40960,  # the GPU's, not one of its MIG devices' 19968
        mig_mode="Enabled",
        virtualization_mode="Pass-Through",
        attached_gpus=1,
    ),
    "smi_xml_A100-SXM4-80GB_MIG_driver535.54.03_1of4gpus.xml": Expect(
        gpu_count=1,  # one <gpu> element although attached_gpus says 4
        driver_version="535.54.03",
        cuda_version="12.2",
        names=("NVIDIA A100-SXM4-80GB",),
        cc=("8.0",),
        pci_id="10de:20b2",
        memory_mib=81920,
        mig_mode="Enabled",
        virtualization_mode=None,  # XML "None": bare metal, no virtualization
        attached_gpus=4,
    ),
    "smi_xml_1xRTX4090_driver535.86.05.xml": Expect(
        gpu_count=1,
        driver_version="535.86.05",
        cuda_version="12.2",
        names=("NVIDIA GeForce RTX 4090",),
        cc=("8.9",),
        pci_id="10de:2684",
        memory_mib=24564,
        virtualization_mode=None,  # XML "None": bare metal, no virtualization
        attached_gpus=1,
    ),
    "smi_xml_1xRTX3080_windows_driver536.40.xml": Expect(
        gpu_count=1,
        driver_version="536.40",
        cuda_version="12.2",
        names=("NVIDIA GeForce RTX 3080",),
        cc=("8.6",),
        pci_id="10de:2216",
        memory_mib=10240,
        virtualization_mode="Pass-Through",
        attached_gpus=1,
    ),
    "smi_xml_2xRTXA5000_driver590.44.01.xml": Expect(
        gpu_count=2,
        driver_version="590.44.01",
        cuda_version="13.1",
        names=("NVIDIA RTX A5000",) * 2,
        cc=("8.6",) * 2,
        pci_id="10de:2231",
        memory_mib=24564,
        virtualization_mode=None,  # XML "None": bare metal, no virtualization
        attached_gpus=2,
    ),
    "smi_xml_1xRTXPRO6000-Blackwell-MaxQ_driver590.44.01.xml": Expect(
        gpu_count=1,
        driver_version="590.44.01",
        cuda_version="13.1",
        names=("NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition",),
        cc=("12.0",),
        pci_id="10de:2bb4",
        memory_mib=97887,
        virtualization_mode=None,  # XML "None": bare metal, no virtualization
        attached_gpus=1,
    ),
    "smi_xml_1xQuadroP400_driver418.43.xml": Expect(
        gpu_count=1,
        driver_version="418.43",
        cuda_version="10.1",
        names=("Quadro P400",),
        cc=("6.1",),
        pci_id="10de:1cb3",
        memory_mib=1998,
        virtualization_mode=None,  # XML "None": bare metal, no virtualization
        attached_gpus=1,
    ),
    "smi_xml_1xTeslaT4_driver515.105.01.xml": Expect(
        gpu_count=1,
        driver_version="515.105.01",
        cuda_version="11.7",
        names=("Tesla T4",),
        cc=("7.5",),
        pci_id="10de:1eb8",
        memory_mib=15360,
        virtualization_mode="Pass-Through",
        attached_gpus=1,
    ),
    "smi_xml_1xTeslaP100-PCIE-16GB_driver510.47.03.xml": Expect(
        gpu_count=1,
        driver_version="510.47.03",
        cuda_version="11.6",
        names=("Tesla P100-PCIE-16GB",),
        cc=("6.0",),
        pci_id="10de:15f8",
        memory_mib=16384,
        virtualization_mode="Pass-Through",
        attached_gpus=1,
    ),
    "smi_xml_2xGTX1080_driver460.27.04.xml": Expect(
        gpu_count=2,
        driver_version="460.27.04",
        cuda_version="11.2",
        names=("GeForce GTX 1080",) * 2,
        cc=("6.1",) * 2,
        pci_id="10de:1b80",
        memory_mib=8116,
        virtualization_mode=None,  # XML "None": bare metal, no virtualization
        attached_gpus=2,
    ),
    "smi_xml_1xGRID-P4-1Q_vGPU-guest_windows_driver513.46.xml": Expect(
        gpu_count=1,
        driver_version="513.46",
        cuda_version="11.6",
        names=("GRID P4-1Q",),
        cc=("6.1",),  # by PCI id 1bb3 = Tesla P4, the board behind the vGPU profile
        pci_id="10de:1bb3",
        memory_mib=1024,
        virtualization_mode="VGPU",
        attached_gpus=1,
    ),
    # ---- nvidia-smi --query-gpu CSV
    "smi_csv_1xH100-80GB-HBM3_driver590.48.01_idle.csv": Expect(
        gpu_count=1,
        driver_version="590.48.01",
        names=("NVIDIA H100 80GB HBM3",),
        cc=("9.0",),
        pci_id="10de:2330",
        memory_mib=81559,
        mig_mode="Disabled",
        attached_gpus=1,
    ),
    "smi_csv_1xL40S_driver595.80_idle.csv": Expect(
        gpu_count=1,
        driver_version="595.80",
        names=("NVIDIA L40S",),
        cc=("8.9",),
        pci_id="10de:26b9",
        memory_mib=46068,
        attached_gpus=1,
    ),
    "smi_csv_1xRTX2080SUPER_windows_driver591.86_idle.csv": Expect(
        gpu_count=1,
        driver_version="591.86",
        names=("NVIDIA GeForce RTX 2080 SUPER",),
        cc=("7.5",),
        pci_id="10de:1e81",
        memory_mib=8192,
        attached_gpus=1,
    ),
    "smi_csv_1xRTX4080SUPER_driver595.71.05_load.csv": Expect(
        gpu_count=1,
        driver_version="595.71.05",
        names=("NVIDIA GeForce RTX 4080 SUPER",),
        cc=("8.9",),
        pci_id="10de:2702",
        memory_mib=16376,
        attached_gpus=1,
    ),
    "smi_csv_1xTeslaP100_nounits.csv": Expect(
        gpu_count=1,
        names=("Tesla P100-PCIE-16GB",),
        cc=("6.0",),  # no compute_cap column: found by name in gpus.yaml
    ),
    "smi_csv_2xGPU_a0s-fixture1.csv": Expect(
        gpu_count=2,
        names=(None, None),  # uuid-only query: nothing to name them by
        cc=(None, None),  # ... and no compute capability is guessed
    ),
    "smi_csv_3xGPU_a0s-fixture2.csv": Expect(
        gpu_count=3,
        names=(None, None, None),
        cc=(None, None, None),
        memory_mib=8119,
    ),
    # ---- lspci -nn
    "lspci_nn_8xA100-SXM4-80GB_6xNVSwitch_azure-vm.txt": Expect(
        gpu_count=8,  # not 14: the six Bridge [0680] functions are NVSwitches
        driver_state="absent",
        names=("A100 SXM4 80GB",) * 8,
        cc=("8.0",) * 8,
        pci_id="10de:20b2",
        nvswitch_count=6,
    ),
    "lspci_nn_1xA10_kvm-vm.txt": Expect(
        gpu_count=1,  # the Virtio GPU VGA controller is not NVIDIA
        driver_state="absent",
        names=("A10",),
        cc=("8.6",),
        pci_id="10de:2236",
    ),
    "lspci_nnkq_1xRTX3050-6GB_with_HDMI-audio_desktop.txt": Expect(
        gpu_count=1,  # the HDMI audio function 01:00.1 is not a GPU
        driver_state="absent",
        names=("GeForce RTX 3050 6GB",),
        cc=("8.6",),
        pci_id="10de:2584",
        other_nvidia_functions=1,
    ),
    "lspci_nn_1xRTXA1000-Laptop_optimus_dell-precision-5570.txt": Expect(
        gpu_count=1,  # the Intel iGPU at 00:02.0 is not counted
        driver_state="absent",
        names=("RTX A1000 Laptop GPU",),
        cc=("8.6",),
        pci_id="10de:25b9",
    ),
    # ---- nvidia-smi failures (no PCI listing in these raws, so no GPU is known)
    "smi_fail_couldnt_communicate_shine-cluster-issue50.txt": Expect(
        gpu_count=0, driver_state="not_loaded", message=NOT_LOADED
    ),
    "smi_fail_couldnt_communicate_Renya-Kujirada-Docker-k8s.txt": Expect(
        gpu_count=0, driver_state="not_loaded", message=NOT_LOADED
    ),
    "smi_fail_no_devices_found_RTX5090_open-gpu-kernel-modules-issue862.txt": Expect(
        gpu_count=0, driver_state="no_devices", message="No devices were found"
    ),
    "smi_fail_nvml_mismatch_570.124_tinygrad-ogkm-issue47.txt": Expect(
        gpu_count=0, driver_state="version_mismatch", message=MISMATCH, library_version="570.124"
    ),
    "smi_fail_nvml_mismatch_550.144_intel-llvm-issue17614.txt": Expect(
        gpu_count=0, driver_state="version_mismatch", message=MISMATCH, library_version="550.144"
    ),
    "smi_fail_nvml_mismatch_no-version-line_driver460_shine-cluster-issue30.txt": Expect(
        gpu_count=0, driver_state="version_mismatch", message=MISMATCH, library_version=None
    ),
}

# The captures do not record nvidia-smi's exit status. 9 is what this project's own sandbox
# capture recorded for "couldn't communicate" (../shared/reference/sandbox-captures.md); the
# others only need to be non-zero, since classification goes by the text.
FAILURE_RC = {"not_loaded": 9, "no_devices": 6, "version_mismatch": 18}


def read_capture(name: str) -> str:
    return (CAPTURES / name).read_text(encoding="utf-8")


def raw_for(name: str) -> dict[str, Any]:
    """The raw dict tfgpu_probe would return on the captured host, with only this output."""
    text = read_capture(name)
    ok = {"rc": 0, "stdout": text, "stderr": "", "error": None}
    if name.startswith("smi_xml_"):
        return {"nvidia_smi": {"path": "/usr/bin/nvidia-smi", "xml": ok, "csv": None}}
    if name.startswith("smi_csv_"):
        return {"nvidia_smi": {"path": "/usr/bin/nvidia-smi", "xml": None, "csv": ok}}
    if name.startswith("lspci_"):
        return {"lspci": {"path": "/usr/bin/lspci", **ok}, "nvidia_smi": {"path": None}}
    if name.startswith("smi_fail_"):
        rc = FAILURE_RC[EXPECTED[name].driver_state]
        failed = {"rc": rc, "stdout": text, "stderr": "", "error": None}
        return {"nvidia_smi": {"path": "/usr/bin/nvidia-smi", "xml": failed, "csv": failed}}
    raise AssertionError(f"no rule to turn capture {name} into probe output")


def capture_files() -> list[str]:
    if not CAPTURES.is_dir():
        return []
    return sorted(p.name for p in CAPTURES.iterdir() if p.is_file() and p.name not in NOT_CAPTURES)


def test_every_capture_has_a_case() -> None:
    files = set(capture_files())
    assert files, f"no capture files in {CAPTURES}"
    assert sorted(files - EXPECTED.keys()) == [], "captures without a test case"
    assert sorted(EXPECTED.keys() - files) == [], "test cases whose capture is gone"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_capture_host_facts(name: str) -> None:
    expect = EXPECTED[name]
    facts = host_facts_from_probe(raw_for(name))

    assert facts["gpu_count"] == expect.gpu_count
    assert len(facts["gpus"]) == expect.gpu_count
    assert facts["driver"]["state"] == expect.driver_state
    assert facts["driver"]["version"] == expect.driver_version
    assert facts["driver"]["cuda_version"] == expect.cuda_version
    assert facts["driver"]["message"] == expect.message
    assert facts["driver"]["library_version"] == expect.library_version
    assert facts["nvswitch_count"] == expect.nvswitch_count
    assert facts["other_nvidia_functions"] == expect.other_nvidia_functions
    assert facts["attached_gpus"] == expect.attached_gpus
    assert tuple(g["name"] for g in facts["gpus"]) == expect.names
    assert tuple(g["compute_capability"] for g in facts["gpus"]) == expect.cc
    assert [g["index"] for g in facts["gpus"]] == list(range(expect.gpu_count))
    if expect.gpu_count:
        first = facts["gpus"][0]
        assert first["pci_id"] == expect.pci_id
        assert first["memory_mib"] == expect.memory_mib
        assert first["mig_mode"] == expect.mig_mode
        assert first["virtualization_mode"] == expect.virtualization_mode


@pytest.mark.parametrize("name", [n for n in sorted(EXPECTED) if n.startswith("smi_fail_")])
def test_failure_text_classification(name: str) -> None:
    expect = EXPECTED[name]
    failure = classify_smi_failure(read_capture(name), FAILURE_RC[expect.driver_state])
    assert failure["state"] == expect.driver_state
    assert failure["message"] == expect.message


def test_v100s_node_is_eight_gpus_on_460() -> None:
    facts = host_facts_from_probe(raw_for("smi_xml_8xTeslaV100S-PCIE-32GB_driver460.73.01.xml"))
    assert facts["source"] == "nvidia-smi-xml"
    assert facts["gpu_count"] == 8
    assert facts["driver"]["version"] == "460.73.01"
    assert {g["compute_capability"] for g in facts["gpus"]} == {"7.0"}
    assert len({g["bus_id"] for g in facts["gpus"]}) == 8
    assert facts["gpus"][0]["bus_id"] == "0000:00:0d.0"


def test_mig_capture_with_one_of_four_gpus_says_so() -> None:
    name = "smi_xml_A100-SXM4-80GB_MIG_driver535.54.03_1of4gpus.xml"
    report = parse_smi_xml(read_capture(name))
    assert report["attached_gpus"] == 4
    assert len(report["gpus"]) == 1
    facts = host_facts_from_probe(raw_for(name))
    assert facts["gpu_count"] == 1
    assert any("4 attached GPUs" in note and "lists 1" in note for note in facts["notes"])


def test_complete_mig_capture_has_no_count_note() -> None:
    facts = host_facts_from_probe(raw_for("smi_xml_1xA100-SXM4-40GB_MIG_driver510.47.03.xml"))
    assert facts["gpus"][0]["mig_mode"] == "Enabled"
    assert not any("attached" in note for note in facts["notes"])


@pytest.mark.parametrize(
    "name",
    [
        "smi_xml_1xRTX3080_windows_driver536.40.xml",
        "smi_xml_1xGRID-P4-1Q_vGPU-guest_windows_driver513.46.xml",
        "smi_csv_1xRTX2080SUPER_windows_driver591.86_idle.csv",
    ],
)
def test_windows_captures_give_gpus_but_no_os(name: str) -> None:
    facts = host_facts_from_probe(raw_for(name))
    assert facts["gpu_count"] == 1
    assert facts["os"] == {"family": None, "distribution": None, "version": None, "arch": None}
    assert any("Windows" in note for note in facts["notes"])


def test_a100_nvswitch_listing_counts_bridges_apart() -> None:
    functions = parse_lspci(read_capture("lspci_nn_8xA100-SXM4-80GB_6xNVSwitch_azure-vm.txt"))
    nvidia = [f for f in functions if f["vendor_id"] == "10de"]
    assert len(nvidia) == 14
    assert sorted({f["class_code"] for f in nvidia}) == ["0302", "0680"]
    assert {f["device_id"] for f in nvidia if f["class_code"] == "0680"} == {"1af1"}
    assert nvidia[-1]["bus_id"] == "000e:00:00.0"
    facts = host_facts_from_probe(raw_for("lspci_nn_8xA100-SXM4-80GB_6xNVSwitch_azure-vm.txt"))
    assert (facts["gpu_count"], facts["nvswitch_count"], facts["source"]) == (8, 6, "lspci")


def test_rtx3050_lspci_reads_kernel_driver_from_detail_lines() -> None:
    text = read_capture("lspci_nnkq_1xRTX3050-6GB_with_HDMI-audio_desktop.txt")
    nvidia = {f["bus_id"]: f for f in parse_lspci(text) if f["vendor_id"] == "10de"}
    assert set(nvidia) == {"0000:01:00.0", "0000:01:00.1"}
    assert nvidia["0000:01:00.0"]["kernel_driver"] == "nvidia"
    assert nvidia["0000:01:00.1"]["class_code"] == "0403"
    assert nvidia["0000:01:00.1"]["kernel_driver"] == "snd_hda_intel"


def test_nounits_csv_values_are_plain_numbers() -> None:
    report = parse_smi_csv(read_capture("smi_csv_1xTeslaP100_nounits.csv"))
    assert report["driver_version"] is None  # the query did not ask for it
    assert [g["name"] for g in report["gpus"]] == ["Tesla P100-PCIE-16GB"]
    assert report["gpus"][0]["uuid"] == "GPU-ef1b2c9b-38d8-2090-2bd1-f567a3eb42a6"


def test_rtx4080super_under_load_parses_all_columns() -> None:
    report = parse_smi_csv(read_capture("smi_csv_1xRTX4080SUPER_driver595.71.05_load.csv"))
    gpu = report["gpus"][0]
    assert (gpu["bus_id"], gpu["compute_capability"]) == ("0000:01:00.0", "8.9")
    assert gpu["mig_mode"] is None  # "[N/A]" on a consumer card


def test_failing_smi_with_lspci_counts_pci_gpus() -> None:
    """The RTX 5090 issue's situation: the card is on the bus, the driver sees no device."""
    failed = read_capture("smi_fail_no_devices_found_RTX5090_open-gpu-kernel-modules-issue862.txt")
    lspci = read_capture("lspci_nnkq_1xRTX3050-6GB_with_HDMI-audio_desktop.txt")
    facts = host_facts_from_probe(
        {
            "lspci": {"rc": 0, "stdout": lspci, "stderr": ""},
            "nvidia_smi": {
                "path": "/usr/bin/nvidia-smi",
                "xml": {"rc": 6, "stdout": failed, "stderr": ""},
            },
            "proc_modules": ["nvidia_uvm", "nvidia"],
        }
    )
    assert facts["driver"]["state"] == "no_devices"
    assert facts["driver"]["loaded"] is True
    assert (facts["gpu_count"], facts["source"]) == (1, "lspci")
    assert facts["gpus"][0]["compute_capability"] == "8.6"


def test_mismatch_reports_kernel_module_version_from_proc() -> None:
    failed = read_capture("smi_fail_nvml_mismatch_570.124_tinygrad-ogkm-issue47.txt")
    proc = (
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.124.06  "
        "Release Build  (root@host)  Tue Mar 4 2025\n"
        "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
    )
    facts = host_facts_from_probe(
        {
            "nvidia_smi": {"path": "nvidia-smi", "xml": {"rc": 18, "stdout": failed}},
            "proc_driver_version": proc,
        }
    )
    assert facts["driver"]["state"] == "version_mismatch"
    assert facts["driver"]["version"] == "570.124.06"  # the loaded module
    assert facts["driver"]["library_version"] == "570.124"  # the userspace NVML
    assert facts["driver"]["loaded"] is True
