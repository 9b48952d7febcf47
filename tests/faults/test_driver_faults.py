"""Faults in the driver stage's package manager, in one `--tags driver` run over three hosts:

3. the dpkg lock held by another process for the whole run: apt waits its lock timeout
   (60 s), then the host fails naming the lock;
6. the package mirror unreachable for one host (its apt sources point at a closed port).

The third host manages no driver (tfgpu_driver_source: none) and must finish. The run uses
tfgpu_max_fail_percentage=100: with the default 0 the first failed host stops the stage for
every host (that is the option's documented meaning). Default tier: no host installs a
driver here. The rerun, which installs the driver on the two repaired hosts, is slow.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.helpers import Lab, Run, closed_port, tfgpu, write_inventory

LOCKED, NO_MIRROR, HEALTHY = "flt-a-1", "flt-a-2", "flt-a-3"
SOURCES = "/etc/apt/sources.list.d/debian.sources"
LOCK = "/var/lib/dpkg/lock-frontend"
# dpkg and apt take fcntl (POSIX) locks: flock(1) would not stop them.
HOLD_LOCK = (
    "setsid -f python3 -c 'import fcntl, os, time; f = open(\"" + LOCK + '", "a"); '
    'fcntl.lockf(f, fcntl.LOCK_EX); open("/run/flt-lock.pid", "w").write(str(os.getpid())); '
    "time.sleep(3600)' </dev/null >/dev/null 2>&1; sleep 1; cat /run/flt-lock.pid"
)
RELEASE_LOCK = "kill $(cat /run/flt-lock.pid) 2>/dev/null; rm -f /run/flt-lock.pid; true"


@pytest.fixture(scope="module")
def setup(flt_a: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    work = tmp_path_factory.mktemp("driver-faults")
    port = closed_port()
    sources = flt_a.sh(NO_MIRROR, f"cat {SOURCES}")
    flt_a.sh(
        NO_MIRROR, f"sed -i 's#^URIs: http://[^/]*/#URIs: http://127.0.0.1:{port}/#' {SOURCES}"
    )
    holder = int(flt_a.sh(LOCKED, HOLD_LOCK).strip())
    hosts = {
        LOCKED: flt_a.host_vars(LOCKED),
        NO_MIRROR: flt_a.host_vars(NO_MIRROR),
        HEALTHY: flt_a.host_vars(HEALTHY) | {"tfgpu_driver_source": "none"},
    }
    inventory = write_inventory(work / "hosts.yml", hosts, flt_a.group_vars())
    try:
        yield {"work": work, "lab": flt_a, "port": port, "inventory": inventory,
               "sources": sources, "holder": holder}  # fmt: skip
    finally:
        # Leave the lab usable for the other fault modules.
        flt_a.ssh(LOCKED, RELEASE_LOCK)
        flt_a.ssh(NO_MIRROR, f"cat > {SOURCES} <<'EOF'\n{sources}EOF\n")


def driver_run(setup: dict, *extra: str) -> Run:
    return tfgpu("--inventory", str(setup["inventory"]), "--tags", "driver",
                 "-e", "tfgpu_max_fail_percentage=100", *extra,
                 run_root=setup["work"] / "runs")  # fmt: skip


@pytest.fixture(scope="module")
def faulty_run(setup: dict) -> Run:
    return driver_run(setup)


def test_exit_code_and_reports(faulty_run: Run) -> None:
    assert faulty_run.rc == 1, faulty_run.output[-3000:]
    assert faulty_run.report["exit_code"] == 1
    assert {h["name"]: h["ansible_status"] for h in faulty_run.report["hosts"]} == {
        LOCKED: "failed", NO_MIRROR: "failed", HEALTHY: "ok",
    }  # fmt: skip


def test_healthy_host_finishes_the_stage(faulty_run: Run) -> None:
    host = faulty_run.summary_host(HEALTHY)
    assert host["failed"] == 0 and host["unreachable"] == 0
    assert host["ok"] > 8, host  # the driver role ran to its end, not just the preflight


def test_held_dpkg_lock_waits_then_fails_naming_the_lock(faulty_run: Run, setup: dict) -> None:
    """Fault 3: apt waits for the lock (60 s), then fails naming the lock file."""
    host = faulty_run.host(LOCKED)
    assert host["verdict"] == "fail"
    (error,) = host["errors"]
    assert error["task"] == "Install the driver packages", error
    assert f"Unable to acquire the dpkg frontend lock ({LOCK})" in error["message"], error
    assert faulty_run.wall_s >= 60, "apt did not wait for the lock"
    # The preflight saw the holder (its facts), before anything was installed.
    locks = faulty_run.summary_host(LOCKED)["preflight"]["host"]["locks"]
    assert {"path": LOCK, "pid": setup["holder"], "command": "python3"} in locks, locks


def test_held_dpkg_lock_names_the_holder_in_the_report(faulty_run: Run, setup: dict) -> None:
    text = faulty_run.diagnosis_text(LOCKED) + str(faulty_run.host(LOCKED)["warnings"])
    assert f"{setup['holder']}" in text and "python3" in text, text


def test_unreachable_mirror_fails_only_that_host(faulty_run: Run) -> None:
    """Fault 6: the refresh of the package lists fails on that host alone."""
    host = faulty_run.host(NO_MIRROR)
    assert host["verdict"] == "fail"
    # The apt module's own failure is rescued; the failure that ends the host names the cause.
    error = host["errors"][-1]
    assert error["task"] == "Fail with the unreachable sources", host["errors"]
    assert "Refreshing the apt package lists failed" in error["message"]


def test_unreachable_mirror_is_named_in_the_message(faulty_run: Run, setup: dict) -> None:
    message = faulty_run.host(NO_MIRROR)["errors"][-1]["message"]
    assert f"127.0.0.1:{setup['port']}" in message and "refused" in message.lower(), message


def test_no_host_is_half_configured(faulty_run: Run, setup: dict) -> None:
    lab = setup["lab"]
    for name in (LOCKED, NO_MIRROR, HEALTHY):
        assert lab.dpkg_audit(name) == "", name
        pkgs = lab.sh(
            name, "dpkg-query -W -f='${Package}\\n' 'nvidia*' 'libcuda*' 2>/dev/null || true"
        )
        assert pkgs.strip() == "", f"{name} has driver packages: {pkgs}"
    for host in faulty_run.summary["hosts"]:
        assert host["changed"] == 0, host


@pytest.mark.slow
def test_rerun_after_repair_installs_on_the_failed_hosts_only(faulty_run: Run, setup: dict) -> None:
    """Release the lock, restore the mirror, `--retry-failed`: both hosts get the driver."""
    assert faulty_run.rc == 1
    lab = setup["lab"]
    lab.sh(LOCKED, RELEASE_LOCK)
    lab.sh(NO_MIRROR, f"cat > {SOURCES} <<'EOF'\n{setup['sources']}EOF\n")
    rerun = driver_run(setup, "--retry-failed")
    print(f"rerun: {rerun.wall_s:.0f} s")
    assert rerun.rc == 0, rerun.output[-4000:]
    assert sorted(h["name"] for h in rerun.summary["hosts"]) == [LOCKED, NO_MIRROR]
    for name in (LOCKED, NO_MIRROR):
        assert lab.dpkg_audit(name) == ""
        held = lab.sh(name, "dpkg --get-selections nvidia-driver libcuda1 nvidia-smi")
        assert held.split().count("hold") == 3, held
