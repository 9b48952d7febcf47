"""The sandbox lab on this machine: real namespaces, overlays and sshd, driven through the CLI.

Needs root and debootstrap; the first run builds the root filesystem (about a minute), later
runs reuse the cache and take well under 3 minutes. The BadInput tests at the end need neither.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tfgpu_provision.errors import BadInput
from tfgpu_provision.sandbox import cli
from tfgpu_provision.sandbox import lab as labs
from tfgpu_provision.sandbox import node as nodes

pytestmark = pytest.mark.integration


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "sandbox integration tests need root (namespaces, overlay mounts)"
    if shutil.which("debootstrap") is None:
        return "sandbox integration tests need debootstrap (apt-get install debootstrap)"
    return None


needs_root = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


def sandbox(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "tfgpu_provision.sandbox", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"sandbox {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
        )
    return proc


def ssh(lab: labs.Lab, host: str, command: str, check: bool = True) -> str:
    proc = subprocess.run(
        lab.ssh_argv(host, [command]), capture_output=True, text=True, timeout=300, check=False
    )
    if check and proc.returncode != 0:
        pytest.fail(f"{host}: {command!r} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def unique_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def listening_ports() -> set[int]:
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def mounts_naming(path: Path) -> list[str]:
    return [line for line in Path("/proc/mounts").read_text().splitlines() if str(path) in line]


@pytest.fixture(scope="module")
def lab() -> Iterator[labs.Lab]:
    if _missing():
        pytest.skip(_missing() or "")
    name = unique_name("it")
    sandbox("up", "--hosts", "2", "--name", name, "--simulate-gpus", "2")
    try:
        yield labs.Lab.load(name)
    finally:
        if labs.lab_dir(name).exists():
            sandbox("down", "--name", name, check=False)


@needs_root
def test_inventory_lists_both_hosts_with_sandbox_vars(lab: labs.Lab) -> None:
    inventory = yaml.safe_load(labs.inventory_path(lab.name).read_text())
    group = inventory["all"]["children"]["gpu_nodes"]
    assert sorted(group["hosts"]) == [f"{lab.name}-1", f"{lab.name}-2"]
    for item in lab.nodes:
        host = group["hosts"][item.name]
        assert host["ansible_port"] == item.port
        assert host["ansible_host"] == "127.0.0.1"
        assert Path(host["ansible_ssh_private_key_file"]).is_file()
    assert group["vars"]["tfgpu_sandbox"] is True
    assert group["vars"]["tfgpu_simulate_gpus"] == 2
    assert group["vars"]["tfgpu_env_manager"] == "venv"
    reboot = group["vars"]["tfgpu_sandbox_reboot_command"]
    assert ssh(lab, "1", f"test -x {reboot} && echo ok").strip() == "ok"


@needs_root
def test_hosts_have_own_hostname_files_and_processes(lab: labs.Lab) -> None:
    assert ssh(lab, "1", "hostname").strip() == f"{lab.name}-1"
    assert ssh(lab, "2", "hostname").strip() == f"{lab.name}-2"
    marker = f"/root/isolation-{uuid.uuid4().hex}"
    ssh(lab, "1", f"echo one > {marker} && echo one > /tmp/{Path(marker).name}")
    assert ssh(lab, "1", f"cat {marker}").strip() == "one"
    assert ssh(lab, "2", f"ls {marker} /tmp/{Path(marker).name} 2>&1 || true").count("No such") == 2
    assert not Path(marker).exists()
    assert not Path("/tmp", Path(marker).name).exists()
    # Own pid namespace: PID 1 is this node's sshd, and the other node's sshd is invisible.
    first, second = lab.nodes
    assert f"-p {first.port}" in ssh(lab, "1", "tr '\\0' ' ' < /proc/1/cmdline")
    assert f"-p {second.port}" not in ssh(lab, "1", "ps -eo args")


@needs_root
def test_apt_install_on_one_host_leaves_the_other_untouched(lab: labs.Lab) -> None:
    install = "apt-get install -y -q --no-install-recommends hello"
    ssh(lab, "1", f"apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive {install}")
    assert "Status: install ok installed" in ssh(lab, "1", "dpkg -s hello")
    assert ssh(lab, "1", "hello").strip() == "Hello, world!"
    assert "is not installed" in ssh(lab, "2", "dpkg -s hello 2>&1 || true")
    sources = ssh(lab, "2", "cat /etc/apt/sources.list.d/debian.sources")
    assert "Components: main contrib non-free non-free-firmware" in sources


@needs_root
def test_reboot_gives_new_boot_id_and_keeps_overlay(lab: labs.Lab) -> None:
    before = ssh(lab, "2", "cat /run/boot-id").strip()
    ssh(lab, "2", "echo kept > /root/survives-reboot && touch /run/gone-after-reboot")
    ssh(lab, "2", "tfgpu-sandbox-reboot")
    host = lab.node("2")
    deadline = time.monotonic() + 30
    after = before
    while after == before and time.monotonic() < deadline:
        time.sleep(0.3)
        if nodes.ssh_banner(host.port):
            proc = subprocess.run(
                lab.ssh_argv("2", ["cat /run/boot-id"]), capture_output=True, text=True, timeout=30
            )
            after = proc.stdout.strip() if proc.returncode == 0 else before
    assert after != before, "no new boot id within 30 s of tfgpu-sandbox-reboot"
    assert len(after) == 36
    assert ssh(lab, "2", "cat /root/survives-reboot").strip() == "kept"
    assert ssh(lab, "2", "test -e /run/gone-after-reboot || echo fresh").strip() == "fresh"
    assert ssh(lab, "1", "cat /run/boot-id").strip() != after


@needs_root
def test_status_shows_both_hosts_running(lab: labs.Lab) -> None:
    out = sandbox("status", "--name", lab.name).stdout
    for item in lab.nodes:
        line = next(row for row in out.splitlines() if row.startswith(item.name + " "))
        assert str(item.port) in line and "running" in line


@needs_root
def test_down_leaves_no_mounts_processes_or_ports() -> None:
    name = unique_name("dn")
    sandbox("up", "--hosts", "2", "--name", name)
    lab = labs.Lab.load(name)
    ports = {item.port for item in lab.nodes}
    assert ports <= listening_ports()
    assert nodes.processes_referencing(lab.dir)
    sandbox("down", "--name", name)
    assert not mounts_naming(lab.dir)
    assert not ports & listening_ports()
    assert not nodes.processes_referencing(lab.dir)
    assert not lab.dir.exists()
    # ... nor does the kernel hold any of the lab's overlays in another namespace.
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError):  # the process ended while we read it
                assert str(lab.dir) not in Path(f"/proc/{pid}/mountinfo").read_text()


@needs_root
def test_up_recovers_after_a_crash() -> None:
    name = unique_name("cr")
    sandbox("up", "--hosts", "1", "--name", name)
    lab = labs.Lab.load(name)
    try:
        ssh(lab, "1", "echo before-crash > /root/crash-marker")
        item = lab.nodes[0]
        pids = nodes.node_pids(item.files)
        assert len(pids) >= 3  # supervisor, unshare, sshd
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        assert not nodes.wait_gone(pids, 5)
        # A leftover mount from the crash, as a half-finished boot would leave.
        merged = item.files.dir / "merged"
        subprocess.run(["mount", "-t", "tmpfs", "leftover", str(merged)], check=True)
        assert sandbox("status", "--name", name, check=False).returncode == 1

        out = sandbox("up", "--hosts", "1", "--name", name).stdout
        assert "unclean stop" in out
        lab = labs.Lab.load(name)
        assert ssh(lab, "1", "cat /root/crash-marker").strip() == "before-crash"
        assert not mounts_naming(lab.dir)
        assert "running" in sandbox("status", "--name", name).stdout
    finally:
        sandbox("down", "--name", name, check=False)
    assert not mounts_naming(lab.dir)
    assert not nodes.processes_referencing(lab.dir)


# ---- refusals, without root ------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_not_root_is_bad_input_naming_sudo(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(BadInput, match="needs root") as err:
        labs.up(name="x", hosts=1, progress=lambda _: None)
    assert err.value.exit_code == 2
    assert "sudo" in str(err.value)
    assert not (home / ".cache").exists()


def test_no_overlay_support_is_bad_input(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    fake = home / "filesystems"
    fake.write_text("nodev\tsysfs\nnodev\ttmpfs\n\text4\n")
    monkeypatch.setattr(labs, "PROC_FILESYSTEMS", fake)
    with pytest.raises(BadInput, match="overlay") as err:
        labs.up(name="x", hosts=1, progress=lambda _: None)
    assert "modprobe overlay" in str(err.value)


def test_missing_debootstrap_cli_exits_2_with_one_line(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(labs, "DEBOOTSTRAP_PATHS", ())
    real_which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda tool: None if tool == "debootstrap" else real_which(tool)
    )
    assert cli.run(["up", "--name", "x", "--hosts", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: debootstrap is not installed")
    assert "make system-deps" in err and "apt-get install debootstrap" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["up", "--hosts", "0"],
        ["up", "--name", "Bad_Name"],
        ["status", "--name", "no-such-lab"],
        ["ssh", "no-such-lab-1"],
    ],
)
def test_bad_arguments_exit_2(
    argv: list[str], home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.run(argv) == 2
    assert capsys.readouterr().err.startswith("error: ")
