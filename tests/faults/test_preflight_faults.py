"""Faults the preflight catches, in one read-only run over four hosts (default tier):

1. a host unreachable from the start (its SSH port is closed);
9. a host in gpu_nodes without a GPU: fails with tfgpu_require_gpu, only warns by default;
10. a host whose Python is outside the stack's range (Debian 13's Python 3.13 for
    TensorFlow 2.15, which supports 3.9 to 3.11).

`--tags gpu_preflight` runs the guard and the preflight only, and still writes the full
reports. The rerun applies each fix the messages name and retries only the failed hosts.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.helpers import Lab, Run, closed_port, tfgpu, write_inventory

HEALTHY, NO_GPU, GHOST, OLD_PY = "flt-a-1", "flt-a-2", "flt-a-3", "flt-py-1"


@pytest.fixture(scope="module")
def setup(flt_a: Lab, flt_py: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    work = tmp_path_factory.mktemp("preflight-faults")
    hosts = {
        HEALTHY: flt_a.host_vars(HEALTHY),
        NO_GPU: flt_a.host_vars(NO_GPU) | {"tfgpu_require_gpu": True},
        GHOST: flt_a.host_vars(GHOST) | {"ansible_port": closed_port()},
        OLD_PY: flt_py.host_vars(OLD_PY) | {"tfgpu_tensorflow_version": "2.15"},
    }
    inventory = write_inventory(work / "hosts.yml", hosts, flt_a.group_vars())
    yield {"work": work, "hosts": hosts, "inventory": inventory, "a": flt_a, "py": flt_py}


@pytest.fixture(scope="module")
def faulty_run(setup: dict) -> Run:
    return tfgpu("--inventory", str(setup["inventory"]), "--tags", "gpu_preflight",
                 run_root=setup["work"] / "runs")  # fmt: skip


def test_exit_code_and_reports(faulty_run: Run) -> None:
    assert faulty_run.rc == 1, faulty_run.output[-3000:]
    assert faulty_run.report["exit_code"] == 1
    for name in ("summary.json", "report.json", "report.md", "report.html", "report.xml"):
        assert (faulty_run.run_dir / name).is_file(), name  # type: ignore[operator]
    assert faulty_run.report["counts"]["fail"] == 2
    assert faulty_run.report["counts"]["unreachable"] == 1


def test_healthy_host_finishes_and_warns_it_has_no_gpu(faulty_run: Run) -> None:
    """Fault 9, default (tfgpu_require_gpu false): the host passes the preflight, warned."""
    host = faulty_run.host(HEALTHY)
    assert host["ansible_status"] == "ok", host
    assert host["stats"]["failed"] == 0 and host["stats"]["unreachable"] == 0
    assert host["stack"]["tensorflow"] == "2.21.0"
    codes = {w["code"]: w["message"] for w in host["warnings"]}
    assert "NO_GPU" in codes, host["warnings"]
    assert "No NVIDIA GPU was found" in codes["NO_GPU"]


def test_unreachable_host_is_named_with_the_cause(faulty_run: Run, setup: dict) -> None:
    """Fault 1: the closed SSH port is named, with the fix."""
    host = faulty_run.host(GHOST)
    port = setup["hosts"][GHOST]["ansible_port"]
    assert host["verdict"] == "unreachable"
    assert f"port {port}: Connection refused" in host["reason"], host["reason"]
    assert host["diagnoses"][0]["id"] == "UNREACHABLE"
    assert "ansible.builtin.ping" in host["diagnoses"][0]["fix"]
    assert f"{GHOST}: unreachable" in faulty_run.output


def test_host_without_gpu_fails_when_a_gpu_is_required(faulty_run: Run) -> None:
    """Fault 9 with tfgpu_require_gpu: true: NO_GPU_REQUIRED, and how to fix it."""
    host = faulty_run.host(NO_GPU)
    assert host["verdict"] == "fail"
    assert [d["id"] for d in host["diagnoses"]] == ["NO_GPU_REQUIRED"]
    assert "tfgpu_require_gpu is true" in host["diagnoses"][0]["cause"]
    assert "lspci -nn -d 10de:" in host["diagnoses"][0]["fix"]


def test_python_out_of_range_fails_the_host_with_the_fix(faulty_run: Run) -> None:
    """Fault 10: Python 3.13 on the host, TensorFlow 2.15 supports 3.9 to 3.11."""
    host = faulty_run.host(OLD_PY)
    assert host["verdict"] == "fail"
    (diag,) = [d for d in host["diagnoses"] if d["id"] == "VENV_PYTHON_OUT_OF_RANGE"]
    assert "Python 3.13" in diag["cause"] and "3.9 to 3.11" in diag["cause"]
    assert "env_manager: conda" in diag["fix"]
    assert "outside TensorFlow 2.15's supported range 3.9 to 3.11" in faulty_run.output


def test_nothing_changed_on_any_host(faulty_run: Run, setup: dict) -> None:
    for host in faulty_run.summary["hosts"]:
        assert host["changed"] == 0, host
    a, py = setup["a"], setup["py"]
    for lab, name in ((a, HEALTHY), (a, NO_GPU), (py, OLD_PY)):
        assert lab.dpkg_audit(name) == ""
    # Only this module uses flt-py: nothing may have been created there.
    assert py.ssh(OLD_PY, "test -e /opt/tfgpu").returncode == 1, f"{OLD_PY} has /opt/tfgpu"


def test_rerun_with_the_fixes_retries_only_the_failed_hosts(faulty_run: Run, setup: dict) -> None:
    assert faulty_run.rc == 1
    hosts = dict(setup["hosts"])
    hosts[NO_GPU] = setup["a"].host_vars(NO_GPU)  # tfgpu_require_gpu back to false
    hosts[GHOST] = setup["a"].host_vars(GHOST)  # the right SSH port
    hosts[OLD_PY] = hosts[OLD_PY] | {"tfgpu_env_manager": "conda"}  # the fix the message names
    write_inventory(setup["inventory"], hosts, setup["a"].group_vars())
    rerun = tfgpu("--inventory", str(setup["inventory"]), "--tags", "gpu_preflight",
                  "--retry-failed", run_root=setup["work"] / "runs")  # fmt: skip
    assert rerun.rc == 0, rerun.output[-3000:]
    assert sorted(h["name"] for h in rerun.report["hosts"]) == sorted([NO_GPU, GHOST, OLD_PY])
    assert all(h["ansible_status"] == "ok" for h in rerun.report["hosts"])
