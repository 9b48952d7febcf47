"""Faults in the env stage (`--tags env`), with a small requirement (numpy from a local
find-links directory, tfgpu_wheelhouse off) instead of TensorFlow's 3 GB of wheels:

4. the host's disk full during the env install (a 40 MB tmpfs on /opt/tfgpu): the host fails
   with ENOSPC, nothing sits at the env's final prefix, the other host finishes;
7. Ctrl-C during a run (SIGINT to the CLI while pip runs on the host): exit 130, a partial
   summary, no env at its final prefix, and the rerun builds it.

Both install Python packages on fresh hosts (about 1.5 and 2 minutes on 2 cores): slow tier.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import Server
from tests.faults.helpers import (
    Lab,
    Run,
    cli_argv,
    cli_env,
    newest_run,
    processes,
    tfgpu,
    wait_for,
    write_inventory,
)  # fmt: skip

pytestmark = pytest.mark.slow

FULL, HEALTHY = "flt-a-2", "flt-a-3"
ENVS = "/opt/tfgpu/envs"
STATE = ".tfgpu-env.json"
# Every directory at an env's final prefix must be finished (hold its state file); the
# half-built ones may only exist as <prefix>.partial.
UNFINISHED = (
    f'cd {ENVS} 2>/dev/null || exit 0; for d in *; do [ -L "$d" ] && continue; '
    f'case "$d" in *.partial) continue;; esac; [ -f "$d/{STATE}" ] || echo "$d"; done'
)


def extra_vars(wheels: Server, *requirements: str) -> str:
    return json.dumps(
        {
            "tf_env_requirements": list(requirements),
            "tf_env_pip_find_links": wheels.url,
            "tfgpu_wheelhouse": False,
        }
    )


def failed_stderr(run: Run, host: str) -> str:
    """The stderr of the host's failed task, from the run's job events."""
    assert run.run_dir is not None
    for path in sorted((run.run_dir / "artifacts" / "run" / "job_events").glob("*.json")):
        event = json.loads(path.read_text())
        data = event.get("event_data") or {}
        if event.get("event") == "runner_on_failed" and data.get("host") == host:
            return str((data.get("res") or {}).get("stderr", ""))
    return ""


def env_ready(lab: Lab, host: str) -> dict:
    """The state file of the env the tf-gpu link points at."""
    return dict(json.loads(lab.sh(host, f"cat {ENVS}/tf-gpu/{STATE}")))


# ---- 4: disk full ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def disk(
    flt_a: Lab, small_wheels: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    work = tmp_path_factory.mktemp("env-faults")
    flt_a.sh(FULL, "mkdir -p /opt/tfgpu && mount -t tmpfs -o size=40m flt-full /opt/tfgpu")
    hosts = {FULL: flt_a.host_vars(FULL), HEALTHY: flt_a.host_vars(HEALTHY)}
    inventory = write_inventory(work / "hosts.yml", hosts, flt_a.group_vars())
    try:
        yield {"work": work, "lab": flt_a, "inventory": inventory, "wheels": small_wheels}
    finally:
        flt_a.ssh(FULL, "umount /opt/tfgpu 2>/dev/null; true")


@pytest.fixture(scope="module")
def full_run(disk: dict) -> Run:
    return tfgpu("--inventory", str(disk["inventory"]), "--tags", "env",
                 "-e", extra_vars(disk["wheels"], "numpy==2.4.6"),
                 run_root=disk["work"] / "runs")  # fmt: skip


def test_disk_full_fails_that_host_with_enospc(full_run: Run) -> None:
    assert full_run.rc == 1, full_run.output[-3000:]
    assert full_run.report["exit_code"] == 1
    host = full_run.host(FULL)
    assert host["verdict"] == "fail"
    (error,) = host["errors"]
    assert error["task"] == "Install the requirements with pip", error
    assert f"{FULL}: failed in '{error['task']}'" in full_run.output
    # pip's own words are in the run's artifacts (job events).
    assert "[Errno 28] No space left on device" in failed_stderr(full_run, FULL)


def test_disk_full_cause_is_in_the_report(full_run: Run) -> None:
    assert "No space left on device" in full_run.diagnosis_text(FULL)


def test_disk_full_healthy_host_builds_its_env(full_run: Run, disk: dict) -> None:
    assert full_run.summary_host(HEALTHY)["failed"] == 0
    state = env_ready(disk["lab"], HEALTHY)
    assert state["spec"]["requirements"] == ["numpy==2.4.6"]


def test_disk_full_leaves_no_env_at_its_final_prefix(full_run: Run, disk: dict) -> None:
    lab = disk["lab"]
    assert lab.sh(FULL, UNFINISHED).strip() == ""
    assert lab.ssh(FULL, f"test -e {ENVS}/tf-gpu").returncode == 1, "the env link exists"
    assert lab.dpkg_audit(FULL) == ""


def test_disk_full_rerun_after_freeing_space_converges(full_run: Run, disk: dict) -> None:
    assert full_run.rc == 1
    lab = disk["lab"]
    lab.sh(FULL, "umount /opt/tfgpu")
    rerun = tfgpu("--inventory", str(disk["inventory"]), "--tags", "env", "--retry-failed",
                  "-e", extra_vars(disk["wheels"], "numpy==2.4.6"),
                  run_root=disk["work"] / "runs")  # fmt: skip
    assert rerun.rc == 0, rerun.output[-3000:]
    assert [h["name"] for h in rerun.summary["hosts"]] == [FULL]
    assert env_ready(lab, FULL)["spec"]["requirements"] == ["numpy==2.4.6"]
    assert lab.sh(FULL, UNFINISHED).strip() == ""


# ---- 7: Ctrl-C -------------------------------------------------------------------------------


def test_ctrl_c_during_pip_cancels_then_rerun_converges(
    flt_a: Lab, small_wheels: Server, tmp_path: Path
) -> None:
    hosts = {HEALTHY: flt_a.host_vars(HEALTHY)}
    inventory = write_inventory(tmp_path / "hosts.yml", hosts, flt_a.group_vars())
    runs = tmp_path / "runs"
    runs.mkdir()
    wanted = ("numpy==2.4.6", "six==1.17.0")  # a new spec: a new env is built
    args = ("--inventory", str(inventory), "--tags", "env",
            "-e", extra_vars(small_wheels, *wanted), "--run-dir", str(runs))  # fmt: skip
    proc = subprocess.Popen(
        cli_argv(*args), env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )

    def pip_running() -> bool:
        assert proc.poll() is None, "the run ended before pip started"
        return any("pip install" in cmd for _, cmd in processes(flt_a.host_pids(HEALTHY)))

    wait_for(pip_running, 300, f"pip install on {HEALTHY}")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    assert "Interrupted: partial summary in" in " ".join(err.split())
    run_dir = newest_run(runs, set())
    assert run_dir is not None
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["cancelled"] is True and summary["exit_code"] == 130
    assert summary["status"] == "canceled"

    # Whatever pip still does on the host, nothing unfinished sits at a final prefix.
    time.sleep(3)
    assert flt_a.sh(HEALTHY, UNFINISHED).strip() == ""
    assert flt_a.dpkg_audit(HEALTHY) == ""

    rerun = tfgpu(*args[:-2], run_root=runs)
    assert rerun.rc == 0, rerun.output[-3000:]
    assert env_ready(flt_a, HEALTHY)["spec"]["requirements"] == list(wanted)
    flt_a.sh(HEALTHY, f"{ENVS}/tf-gpu/bin/python -c 'import numpy, six'")
    assert flt_a.sh(HEALTHY, UNFINISHED).strip() == ""
