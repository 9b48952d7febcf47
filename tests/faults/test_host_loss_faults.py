"""Hosts lost in the driver stage (slow tier: each scenario installs the Debian driver on
fresh sandbox hosts, about 2.5 minutes a host on 2 cores):

8. a reboot that never comes back: one host's reboot command is a no-op, so its boot id never
   changes and the reboot times out (nvidia_driver_reboot_timeout=30). With tfgpu_serial=1
   and tfgpu_max_fail_percentage=0 the second batch must not run at all;
2. a host that dies mid-run: its node (PID 1, sshd) is killed while dpkg installs the driver;
   the other host finishes, the dead one is reported, and the rerun repairs it.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator

import pytest

from tests.faults.helpers import (
    Lab,
    Run,
    cli_argv,
    cli_env,
    folded,
    newest_run,
    processes,
    tfgpu,
    wait_for,
    write_inventory,
)  # fmt: skip

pytestmark = pytest.mark.slow

NVIDIA_PKGS = "dpkg-query -W -f='${Package} ${db:Status-Status}\\n' 'nvidia*' 'libcuda*' || true"


def installed(lab: Lab, host: str) -> list[str]:
    return [
        line.split()[0]
        for line in lab.sh(host, NVIDIA_PKGS).splitlines()
        if line.endswith(" installed")
    ]


# ---- 8: the reboot that never comes back ----------------------------------------------------


@pytest.fixture(scope="module")
def reboot_lab() -> Iterator[Lab]:
    lab = Lab.up("flt-r", hosts=2)
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def reboot_setup(reboot_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("reboot-fault")
    first, second = reboot_lab.hosts
    hosts = {
        first: reboot_lab.host_vars(first) | {"tfgpu_sandbox_reboot_command": "/bin/true"},
        second: reboot_lab.host_vars(second),
    }
    inventory = write_inventory(work / "hosts.yml", hosts, reboot_lab.group_vars())
    return {"work": work, "lab": reboot_lab, "inventory": inventory, "hosts": hosts}


def reboot_run(setup: dict) -> Run:
    return tfgpu("--inventory", str(setup["inventory"]), "--tags", "driver",
                 "-e", "tfgpu_serial=1", "-e", "tfgpu_max_fail_percentage=0",
                 # JSON, so the timeout is an int: reboot.yml compares it with `min`.
                 "-e", '{"nvidia_driver_reboot_timeout": 30}',
                 run_root=setup["work"] / "runs")  # fmt: skip


@pytest.fixture(scope="module")
def stuck_reboot(reboot_setup: dict) -> Run:
    return reboot_run(reboot_setup)


def test_reboot_timeout_fails_the_host(stuck_reboot: Run, reboot_setup: dict) -> None:
    first, _ = reboot_setup["lab"].hosts
    assert stuck_reboot.rc == 1, stuck_reboot.output[-3000:]
    host = stuck_reboot.host(first)
    assert host["verdict"] == "fail"
    (error,) = host["errors"]
    assert error["task"] == "Reboot", error
    assert "Timed out waiting for last boot time check (timeout=30)" in error["message"], error
    # The driver is installed and held: only the reboot is missing.
    assert "nvidia-driver" in installed(reboot_setup["lab"], first)
    assert reboot_setup["lab"].dpkg_audit(first) == ""


def test_second_batch_does_not_run_after_max_fail_percentage_0(
    stuck_reboot: Run, reboot_setup: dict
) -> None:
    _, second = reboot_setup["lab"].hosts
    assert installed(reboot_setup["lab"], second) == []
    stats = stuck_reboot.summary_host(second)
    assert stats["changed"] == 0 and stats["failed"] == 0, stats
    assert stuck_reboot.report["exit_code"] == 1


@pytest.mark.xfail(
    strict=True,
    reason="product gap: a host whose batch never ran (serial + max_fail_percentage) is "
    "reported 'not verified' with ansible_status 'ok', not as skipped/aborted",
)
def test_host_of_the_aborted_batch_is_reported_as_not_run(
    stuck_reboot: Run, reboot_setup: dict
) -> None:
    _, second = reboot_setup["lab"].hosts
    host = stuck_reboot.host(second)
    assert host["ansible_status"] != "ok" or "abort" in folded(str(host)).lower(), host


def test_reboot_rerun_with_a_working_reboot_converges(
    stuck_reboot: Run, reboot_setup: dict
) -> None:
    assert stuck_reboot.rc == 1
    lab = reboot_setup["lab"]
    hosts = {name: lab.host_vars(name) for name in lab.hosts}  # the real reboot command
    write_inventory(reboot_setup["inventory"], hosts, lab.group_vars())
    rerun = reboot_run(reboot_setup)
    assert rerun.rc == 0, rerun.output[-4000:]
    for name in lab.hosts:
        assert "nvidia-driver" in installed(lab, name)
        assert lab.dpkg_audit(name) == ""
        assert len(lab.sh(name, "cat /var/lib/tfgpu/driver-reboots.log").splitlines()) == 1


# ---- 2: the host that dies mid-run -----------------------------------------------------------


@pytest.fixture(scope="module")
def death_lab() -> Iterator[Lab]:
    lab = Lab.up("flt-k", hosts=2)
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def death(death_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("death-fault")
    runs = work / "runs"
    runs.mkdir()
    survivor, victim = death_lab.hosts
    inventory = write_inventory(
        work / "hosts.yml", {h: death_lab.host_vars(h) for h in death_lab.hosts},
        death_lab.group_vars(),
    )  # fmt: skip
    args = ("--inventory", str(inventory), "--tags", "driver",
            "-e", "tfgpu_max_fail_percentage=100")  # fmt: skip
    proc = subprocess.Popen(
        cli_argv(*args, "--run-dir", str(runs)),
        env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def dpkg_running() -> bool:
        assert proc.poll() is None, "the run ended before dpkg ran on the victim"
        return any(
            cmd.startswith("/usr/bin/dpkg ") for _, cmd in processes(death_lab.host_pids(victim))
        )

    wait_for(dpkg_running, 900, f"dpkg on {victim}")
    pid = death_lab.init_pid(victim)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # the whole namespace dies with its PID 1
    out, err = proc.communicate(timeout=1800)
    run = Run(proc.returncode, out, err, 0.0, newest_run(runs, set()))
    death_lab.wait_running(victim)  # the supervisor boots it again, like a power cycle
    return {"lab": death_lab, "run": run, "args": args, "runs": runs,
            "survivor": survivor, "victim": victim}  # fmt: skip


def test_dead_host_is_reported_and_the_other_finishes(death: dict) -> None:
    run: Run = death["run"]
    assert run.rc == 1, run.output[-3000:]
    victim = run.host(death["victim"])
    assert victim["verdict"] in ("unreachable", "fail"), victim
    print("observed:", victim["reason"])
    assert victim["errors"], victim
    survivor = run.summary_host(death["survivor"])
    assert survivor["failed"] == 0 and survivor["unreachable"] == 0, survivor
    assert "nvidia-driver" in installed(death["lab"], death["survivor"])


def test_dead_host_leaves_dpkg_interrupted(death: dict) -> None:
    """What the kill leaves behind: dpkg's own record of the interrupted run."""
    audit = death["lab"].ssh(death["victim"], "dpkg --audit").stdout
    print("dpkg --audit after the kill:", audit[:800])
    if not audit.strip():
        # Timing: on a loaded machine the kill can land before or after dpkg's own run.
        pytest.skip("the kill landed outside dpkg this time: dpkg --audit is empty")
    assert "dpkg" in audit.lower() or "package" in audit.lower(), audit


def test_dead_host_rerun_repairs_dpkg_and_converges(death: dict) -> None:
    lab: Lab = death["lab"]
    rerun = tfgpu(*death["args"], "--retry-failed", run_root=death["runs"])
    assert rerun.rc == 0, rerun.output[-4000:]
    assert [h["name"] for h in rerun.summary["hosts"]] == [death["victim"]]
    assert lab.dpkg_audit(death["victim"]) == ""
    assert "nvidia-driver" in installed(lab, death["victim"])
