"""The driver stage through the CLI on one sandbox host, with the real Debian distro driver.

One lab, one fresh install (about 280 MB from Debian's archive): the tests run in file order
and build on each other - a pin the repository lacks touches nothing; the first install with
tfgpu_reboot=never ends "reboot pending" (exit 1); with auto the host reboots once (new boot
id); the run after that changes nothing. A few minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.sandbox_cli import sandbox

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "driver integration tests need root (sandbox namespaces, overlay mounts)"
    if shutil.which("debootstrap") is None:
        return "driver integration tests need debootstrap (apt-get install debootstrap)"
    site = (REPO / "playbooks/site.yml").read_text()
    if "stages/driver.yml" not in site:
        return "playbooks/site.yml does not import stages/driver.yml yet"
    return None


@dataclass
class Lab:
    name: str
    host: str
    ssh: list[str]


@dataclass
class Run:
    rc: int
    output: str
    host: dict[str, object]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    from tfgpu_provision.sandbox import lab as labs

    name = f"drv{uuid.uuid4().hex[:6]}"
    sandbox("up", "--name", name, "--hosts", "1")
    try:
        loaded = labs.Lab.load(name)
        host = loaded.nodes[0].name
        yield Lab(name=name, host=host, ssh=loaded.ssh_argv("1"))
    finally:
        sandbox("down", "--name", name)


def on_host(lab: Lab, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*lab.ssh, command], capture_output=True, text=True, timeout=120, check=False
    )


def boot_id(lab: Lab) -> str:
    proc = on_host(lab, "cat /run/boot-id")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def provision(lab: Lab, tmp_path: Path, *extra: str) -> Run:
    """`tfgpu-provision --inventory LAB --tags driver [-e ...]`, with its summary.json."""
    run_dir = tmp_path / f"runs-{uuid.uuid4().hex[:6]}"
    argv = [sys.executable, "-m", "tfgpu_provision.cli", "--inventory", lab.name]
    argv += ["--tags", "driver", "--run-dir", str(run_dir)]
    for item in extra:
        argv += ["-e", item]
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
        cwd=tmp_path,
        env=dict(os.environ, NO_COLOR="1", COLUMNS="200"),
    )
    summaries = sorted(run_dir.glob("*/summary.json"))
    assert summaries, f"no summary.json (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
    doc = json.loads(summaries[-1].read_text())
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert lab.host in hosts, doc
    # Rich wraps long messages at the terminal width: compare with whitespace folded.
    output = " ".join((proc.stdout + proc.stderr).split())
    return Run(proc.returncode, output, hosts[lab.host])


def nvidia_installed(lab: Lab) -> list[str]:
    """`dpkg -l | grep -i nvidia` lines of installed packages ("ii", or "hi" once held)."""
    proc = on_host(lab, "COLUMNS=200 dpkg -l | grep -i nvidia || true")
    return [line for line in proc.stdout.splitlines() if line[1:2] == "i"]


def test_pin_the_repository_lacks_fails_in_preflight_and_installs_nothing(
    lab: Lab, tmp_path: Path
) -> None:
    run = provision(lab, tmp_path, "tfgpu_driver_branch=999")
    assert run.rc == 1, run.output[-3000:]
    assert "R999" in run.output
    assert "R535: 535." in run.output, run.output[-3000:]  # what bookworm carries
    assert run.host["changed"] == 0
    assert nvidia_installed(lab) == []


def test_reboot_never_ends_reboot_pending_with_exit_1(lab: Lab, tmp_path: Path) -> None:
    before = boot_id(lab)
    run = provision(lab, tmp_path, "tfgpu_reboot=never")
    assert run.rc == 1, run.output[-3000:]
    assert "reboot pending" in run.output, run.output[-3000:]
    assert boot_id(lab) == before
    installed = nvidia_installed(lab)
    assert any(" nvidia-driver " in line for line in installed), installed
    assert any(" libcuda1:amd64 " in line for line in installed), installed
    held = on_host(lab, "dpkg --get-selections nvidia-driver libcuda1 nvidia-smi").stdout
    assert held.split().count("hold") == 3, held


def test_reboot_auto_reboots_once_then_nothing_changes(lab: Lab, tmp_path: Path) -> None:
    before = boot_id(lab)
    run = provision(lab, tmp_path)
    assert run.rc == 0, run.output[-3000:]
    after = boot_id(lab)
    assert after != before
    log = on_host(lab, "cat /var/lib/tfgpu/driver-reboots.log").stdout.splitlines()
    assert len(log) == 1, log
    assert log[0].endswith(f"{before} -> {after}"), log

    again = provision(lab, tmp_path)
    assert again.rc == 0, again.output[-3000:]
    assert again.host["changed"] == 0, again.output[-3000:]
    assert boot_id(lab) == after
    assert len(on_host(lab, "cat /var/lib/tfgpu/driver-reboots.log").stdout.splitlines()) == 1
