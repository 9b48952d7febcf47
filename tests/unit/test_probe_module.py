"""roles/gpu_preflight/library/tfgpu_probe.py run as Ansible runs it, then parsed by facts.

The module is executed as a subprocess the way Ansible executes a module file locally
(``python tfgpu_probe.py args.json`` with ``{"ANSIBLE_MODULE_ARGS": {...}}``), against a fake
sysfs tree and against this machine's real /sys.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tfgpu_provision.facts import host_facts_from_probe

MODULE = (
    Path(__file__).resolve().parents[2] / "roles" / "gpu_preflight" / "library" / "tfgpu_probe.py"
)
HAS_NVIDIA_SMI = shutil.which("nvidia-smi") is not None


def run_module(tmp_path: Path, **args: Any) -> dict[str, Any]:
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(MODULE), str(args_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def fake_pci_device(root: Path, address: str, device: str, pci_class: str, vendor: str) -> None:
    folder = root / "bus" / "pci" / "devices" / address
    folder.mkdir(parents=True)
    (folder / "vendor").write_text(f"{vendor}\n")
    (folder / "device").write_text(f"{device}\n")
    (folder / "class").write_text(f"{pci_class}\n")


@pytest.fixture
def fake_sysfs(tmp_path: Path) -> Path:
    root = tmp_path / "sys"
    fake_pci_device(root, "0000:07:00.0", "0x20b2", "0x030200", "0x10de")  # A100 SXM4 80GB
    fake_pci_device(root, "0000:11:00.0", "0x1af1", "0x068000", "0x10de")  # NVSwitch
    fake_pci_device(root, "0000:21:00.1", "0x2291", "0x040300", "0x10de")  # HDMI audio
    fake_pci_device(root, "0000:00:02.0", "0x46a6", "0x030000", "0x8086")  # Intel iGPU
    driver_dir = tmp_path / "drivers" / "nvidia"
    driver_dir.mkdir(parents=True)
    (root / "bus" / "pci" / "devices" / "0000:07:00.0" / "driver").symlink_to(driver_dir)
    return root


def test_module_reads_fake_sysfs_tree(tmp_path: Path, fake_sysfs: Path) -> None:
    result = run_module(
        tmp_path,
        sysfs_root=str(fake_sysfs),
        disk_path=str(tmp_path / "not" / "there" / "yet"),
        _ansible_check_mode=True,
    )
    assert result["changed"] is False
    assert "failed" not in result
    raw = result["raw"]

    assert raw["sysfs_pci"]["devices"] == [
        {
            "address": "0000:07:00.0",
            "vendor": "0x10de",
            "device": "0x20b2",
            "class": "0x030200",
            "driver": "nvidia",
        },
        {
            "address": "0000:11:00.0",
            "vendor": "0x10de",
            "device": "0x1af1",
            "class": "0x068000",
            "driver": None,
        },
        {
            "address": "0000:21:00.1",
            "vendor": "0x10de",
            "device": "0x2291",
            "class": "0x040300",
            "driver": None,
        },
    ]
    # lspci would describe the real machine, not the fake tree
    assert raw["lspci"]["skipped"] == "sysfs_root is overridden"
    # a disk path that does not exist yet is measured at its nearest existing parent
    assert raw["disk"]["target"]["requested"] == str(tmp_path / "not" / "there" / "yet")
    assert raw["disk"]["target"]["path"] == str(tmp_path)
    assert raw["disk"]["target"]["free_bytes"] > 0
    assert raw["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert raw["kernel"]["release"]
    assert isinstance(raw["kernel"]["headers"], bool)

    if HAS_NVIDIA_SMI:
        pytest.skip("a real nvidia-smi on this machine is authoritative over the fake tree")
    host = host_facts_from_probe(raw)
    assert host["source"] == "sysfs"
    assert host["gpu_count"] == 1
    assert host["nvswitch_count"] == 1
    assert host["other_nvidia_functions"] == 1
    assert host["gpus"][0]["pci_id"] == "10de:20b2"
    assert host["gpus"][0]["compute_capability"] == "8.0"
    assert host["disk"]["path"] == str(tmp_path)


def test_module_on_this_machine(tmp_path: Path) -> None:
    if HAS_NVIDIA_SMI or Path("/proc/driver/nvidia/version").exists():
        pytest.skip("this machine has an NVIDIA driver; the no-GPU expectations do not apply")
    result = run_module(tmp_path)
    assert result["changed"] is False
    raw = result["raw"]
    assert raw["nvidia_smi"] == {"path": None, "xml": None, "csv": None}
    assert raw["sysfs_pci"]["root"] == "/sys"

    host = host_facts_from_probe(raw)
    assert host["gpu_count"] == 0
    assert host["driver"]["state"] == "absent"
    assert host["os"]["arch"] == raw["arch"]
    assert host["python"]
    assert host["disk"]["free_bytes"] is not None


def test_module_runs_in_check_mode_with_defaults(tmp_path: Path) -> None:
    result = run_module(tmp_path, _ansible_check_mode=True)
    assert result["changed"] is False
    assert result["invocation"]["module_args"] == {
        "disk_path": "/opt",
        "sysfs_root": "/sys",
        "command_timeout": 30,
        "env_root": "/opt/tfgpu/envs",
    }


def test_module_rejects_unknown_options(tmp_path: Path) -> None:
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"bogus": 1}}))
    proc = subprocess.run(
        [sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1
    assert "bogus" in json.loads(proc.stdout)["msg"]


def test_module_imports_only_stdlib_and_ansible() -> None:
    """It runs on managed hosts, where tfgpu_provision is not installed."""
    tree = ast.parse(MODULE.read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    assert roots - set(sys.stdlib_module_names) == {"ansible"}
