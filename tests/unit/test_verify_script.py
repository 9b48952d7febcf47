"""The verify check script (roles/tf_verify/files/tfgpu_verify.py).

TensorFlow runs for real, on this machine's CPU: each distinct command line runs once per
session (``run_check`` is cached; test_verify_schema.py reuses the same runs; the three main
runs start together), so the whole file costs a few overlapping TensorFlow start-ups. This
machine has no GPU, which is what the failure paths need: TensorFlow's own log says why no
GPU is visible.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import math
import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tfgpu_provision import diagnose

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "roles" / "tf_verify" / "files" / "tfgpu_verify.py"
STAGES = ["versions", "gpus", "matmul", "allreduce", "keras", "placement"]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tfgpu_verify", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


script = load_script()

_TMP = Path(tempfile.mkdtemp(prefix="tfgpu-verify-test-"))
atexit.register(shutil.rmtree, _TMP, True)


@lru_cache(maxsize=1)
def signatures_file() -> str:
    """The rules as the role ships them: the YAML data file, as JSON."""
    path = _TMP / "tfgpu_signatures.json"
    path.write_text(json.dumps(diagnose.load_raw()), encoding="utf-8")
    return str(path)


# The three runs most tests read; started together on first use, so their TensorFlow
# start-ups overlap.
SIMULATED = ("--simulate-devices", "2")
MISSING_GPUS = ("--expected-gpus", "2")
NO_GPU_NO_SIMULATION = ("--expected-gpus", "0")
_STARTED: dict[tuple[str, ...], tuple[subprocess.Popen[str], Path]] = {}


def _start(args: tuple[str, ...]) -> None:
    if args in _STARTED:
        return
    output = Path(tempfile.mkdtemp(dir=_TMP)) / "sub" / "result.json"
    command = [sys.executable, str(SCRIPT), "--signatures", signatures_file()]
    command += ["--output", str(output), *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _STARTED[args] = (process, output)


def _stop_unread() -> None:
    # A run started for tests that were then deselected: do not leave it running.
    for process, _ in _STARTED.values():
        if process.poll() is None:
            process.kill()
            process.communicate()


atexit.register(_stop_unread)  # registered after the rmtree above, so it runs before it


@lru_cache(maxsize=8)
def run_check(*args: str) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """Run the script once per distinct argument list: (exit status, stdout doc, file doc)."""
    pytest.importorskip("tensorflow")
    if args in (SIMULATED, MISSING_GPUS, NO_GPU_NO_SIMULATION):
        for common in (SIMULATED, MISSING_GPUS, NO_GPU_NO_SIMULATION):
            _start(common)
    _start(args)
    process, output = _STARTED[args]
    stdout, stderr = process.communicate(timeout=600)
    assert stdout.strip(), f"no JSON on stdout; stderr: {stderr[-2000:]}"
    return process.returncode, json.loads(stdout), json.loads(output.read_text())


def simulated() -> tuple[int, dict[str, Any], dict[str, Any]]:
    return run_check(*SIMULATED)


def missing_gpus() -> tuple[int, dict[str, Any], dict[str, Any]]:
    return run_check(*MISSING_GPUS)


def no_gpu_no_simulation() -> tuple[int, dict[str, Any], dict[str, Any]]:
    return run_check(*NO_GPU_NO_SIMULATION)


def stage(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in doc["stages"] if s["name"] == name)


# ----------------------------------------------------------------------------- simulated pass
def test_simulated_run_passes_every_stage_and_says_simulated() -> None:
    rc, doc, written = simulated()
    assert rc == 0
    assert doc == written  # --output holds exactly what stdout printed
    assert doc["schema"] == "tfgpu-provision/verify/1"
    assert doc["status"] == "pass"
    assert doc["simulated"] is True
    assert doc["failed_stage"] is None
    assert [s["name"] for s in doc["stages"]] == STAGES
    for result in doc["stages"]:
        assert result["status"] == "pass", (result["name"], result["details"])
        assert result["simulated"] is True
        assert result["duration_s"] >= 0
    assert doc["summary"].startswith("pass (simulated")


def test_simulated_run_reports_versions_and_build_info() -> None:
    import tensorflow as tf

    _, doc, _ = simulated()
    assert doc["versions"]["tensorflow"] == tf.__version__
    build = dict(tf.sysconfig.get_build_info())
    assert doc["build"]["cuda_version"] == build.get("cuda_version")
    assert doc["build"]["cudnn_version"] == build.get("cudnn_version")
    assert doc["build"]["cuda_compute_capabilities"] == list(
        build.get("cuda_compute_capabilities") or []
    )


def test_every_device_result_is_marked_simulated() -> None:
    _, doc, _ = simulated()
    assert [d["name"] for d in doc["devices"]] == ["/device:CPU:0", "/device:CPU:1"]
    assert all(d["simulated"] is True and d["kind"] == "CPU" for d in doc["devices"])
    matmul = stage(doc, "matmul")["details"]["devices"]
    allreduce = stage(doc, "allreduce")["details"]["per_replica"]
    assert len(matmul) == 2 and len(allreduce) == 2
    assert all(entry["simulated"] is True for entry in matmul + allreduce)


def test_gpus_stage_uses_logical_cpu_devices_when_simulating() -> None:
    _, doc, _ = simulated()
    details = stage(doc, "gpus")["details"]
    assert details["found"] == 0
    assert details["devices"] == ["/device:CPU:0", "/device:CPU:1"]
    assert "simulated" in details["message"]


def test_matmul_is_checked_and_timed_on_each_device() -> None:
    _, doc, _ = simulated()
    entries = stage(doc, "matmul")["details"]["devices"]
    for index, entry in enumerate(entries):
        for dtype in ("fp32", "bf16"):
            result = entry[dtype]
            assert result["status"] == "pass"
            assert result["scaled_error"] <= result["tolerance"]
            assert result["device_string"].endswith(f"device:CPU:{index}")
            assert result["tflops"] > 0 and result["iterations"] >= 1
        assert "tf32" in entry["fp32"]
    assert [d["tflops"]["fp32"] for d in doc["devices"]] == [e["fp32"]["tflops"] for e in entries]


def test_allreduce_sums_known_values_exactly() -> None:
    _, doc, _ = simulated()
    details = stage(doc, "allreduce")["details"]
    assert details["replicas"] == 2
    assert details["expected_sum"] == 3.0
    assert details["strategy_reduce"] == 3.0
    rows = details["per_replica"]
    assert [row["contributed"] for row in rows] == [1.0, 2.0]
    assert [row["result"] for row in rows] == [3.0, 3.0]
    assert [row["device_string"].rsplit("/", 1)[-1] for row in rows] == [
        "device:CPU:0",
        "device:CPU:1",
    ]


def test_keras_step_loss_falls_on_mirrored_variables() -> None:
    _, doc, _ = simulated()
    details = stage(doc, "keras")["details"]
    losses = details["losses"]
    assert len(losses) >= 2 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
    assert details["replicas"] == 2 and details["replicas_in_sync"] is True
    for variable in details["variables"]:
        assert [d.rsplit("/", 1)[-1] for d in variable["devices"]] == [
            "device:CPU:0",
            "device:CPU:1",
        ]


def test_placement_is_proven_from_device_strings() -> None:
    _, doc, _ = simulated()
    details = stage(doc, "placement")["details"]
    assert details["expected_devices"] == ["CPU:0", "CPU:1"]
    assert details["sources"] == ["allreduce", "keras", "matmul"]
    observations = details["observations"]
    assert all(o["ok"] for o in observations)
    for device in ("CPU:0", "CPU:1"):
        seen = {o["source"].split(" ")[0] for o in observations if o["expected"].endswith(device)}
        assert seen == {"allreduce", "keras", "matmul"}


def test_log_is_captured() -> None:
    _, doc, _ = simulated()
    log = doc["log"]
    assert log["total_lines"] == len(log["lines"]) > 0
    # The C++ log of TensorFlow itself (not Python's): a line from one of its .cc files.
    assert any(".cc:" in line for line in log["lines"])
    assert log["timed_out"] is False and log["exit_status"] == 0


# ----------------------------------------------------------------------------- failure paths
def test_fewer_gpus_than_expected_fails_with_quoted_log_lines() -> None:
    rc, doc, _ = missing_gpus()
    assert rc == 1
    assert doc["status"] == "fail" and doc["simulated"] is False
    assert doc["failed_stage"] == "gpus"
    gpus = stage(doc, "gpus")
    assert gpus["status"] == "fail"
    assert gpus["details"]["found"] == 0 and gpus["details"]["expected"] == 2
    assert [s["status"] for s in doc["stages"][2:]] == ["skip"] * 4
    assert doc["context"]["gpus_missing"] is True
    diagnoses = doc["diagnoses"]
    assert diagnoses, "no diagnosis for missing GPUs"
    top = diagnoses[0]
    assert top["explains_missing_gpu"] is True and top["severity"] == "error"
    # The quoted lines are TensorFlow's own log lines.
    assert top["lines"] and all(line in doc["log"]["lines"] for line in top["lines"])
    assert top["fix"] in doc["summary"]
    assert "gpus" in doc["summary"]
    # With GPUs in the facts, the generic fallback is there, ranked after the specific causes.
    ids = [d["id"] for d in diagnoses]
    assert "gpus_not_visible_to_tensorflow" in ids
    assert ids.index("gpus_not_visible_to_tensorflow") > 0


def test_no_gpu_and_no_simulation_fails_and_says_so() -> None:
    rc, doc, _ = no_gpu_no_simulation()
    assert rc == 1
    assert doc["status"] == "fail" and doc["simulated"] is False
    assert stage(doc, "gpus")["details"]["message"] == (
        "TensorFlow sees no GPU and simulation is off"
    )
    # No GPU in the host at all: that, not the missing libcuda the log complains about, is
    # the cause to show first.
    top = doc["diagnoses"][0]
    assert top["id"] == "no_gpu_on_host"
    assert "tfgpu_simulate_gpus" in top["fix"]
    assert top["fix"] in doc["summary"]
    assert len(doc["diagnoses"]) > 1  # the log's own lines are diagnosed too


def test_timeout_fails_the_stage_it_interrupted() -> None:
    pytest.importorskip("tensorflow")
    # TensorFlow cannot even be imported within 0.5 s: the versions stage times out.
    rc, doc, _ = run_check("--simulate-devices", "2", "--timeout", "0.5")
    assert rc == 1
    assert doc["log"]["timed_out"] is True
    first = doc["stages"][0]
    assert first["name"] == "versions" and first["status"] == "fail"
    assert "timed out after 0.5 s" in first["details"]["message"]
    assert [s["status"] for s in doc["stages"][1:]] == ["skip"] * 5


def test_bad_visible_devices_is_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--visible-devices", "0,zero"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "not a GPU index" in proc.stderr


# ----------------------------------------------------------------------------- pure functions
def test_check_matmul_accepts_tf32_sized_error_and_rejects_a_wrong_result() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    n = 256
    a = rng.standard_normal((n, n))
    b = rng.standard_normal((n, n))
    reference = a @ b

    # TF32 keeps 10 mantissa bits: round the inputs like it does.
    def tf32(x: Any) -> Any:
        mantissa, exponent = np.frexp(x)
        return np.ldexp(np.round(mantissa * 2**11) / 2**11, exponent)

    good = script.check_matmul(tf32(a) @ tf32(b), reference, n, script.TOLERANCE["fp32"])
    assert good["ok"] is True and 0 < good["scaled_error"] <= script.TOLERANCE["fp32"]
    wrong = reference.copy()
    wrong[3, 7] += 0.5 * math.sqrt(n)  # one wrong element, half an output's spread
    bad = script.check_matmul(wrong, reference, n, script.TOLERANCE["fp32"])
    assert bad["ok"] is False and bad["scaled_error"] == pytest.approx(0.5)
    transposed = script.check_matmul(reference.T, reference, n, script.TOLERANCE["bf16"])
    assert transposed["ok"] is False


def test_check_matmul_rejects_nan_and_wrong_shape() -> None:
    import numpy as np

    reference = np.ones((4, 4))
    with_nan = reference.copy()
    with_nan[0, 0] = np.nan
    assert script.check_matmul(with_nan, reference, 4, 1.0)["ok"] is False
    assert script.check_matmul(np.ones((4, 3)), reference, 4, 1.0)["ok"] is False


def test_loss_fell() -> None:
    assert script.loss_fell([2.0, 1.5, 1.0]) is True
    assert script.loss_fell([1.0, 1.5, 1.0]) is False
    assert script.loss_fell([2.0, float("nan"), 1.0]) is False
    assert script.loss_fell([1.0]) is False


def test_device_id_normalises_tensor_and_logical_names() -> None:
    assert script.device_id("/job:localhost/replica:0/task:0/device:GPU:3") == "GPU:3"
    assert script.device_id("/device:CPU:1") == "CPU:1"
    assert script.device_id("") is None


def test_parse_visible_devices() -> None:
    assert script.parse_visible_devices(None) is None
    assert script.parse_visible_devices("all") is None
    assert script.parse_visible_devices("0, 2") == ["0", "2"]
    assert script.parse_visible_devices("GPU-1a2b") == ["GPU-1a2b"]
    with pytest.raises(Exception, match="twice"):
        script.parse_visible_devices("1,1")


def test_a_child_killed_mid_stage_fails_that_stage_and_skips_the_rest() -> None:
    finished = {
        "event": "stage",
        "stage": {
            "name": "versions",
            "status": "pass",
            "simulated": False,
            "details": {"message": "ok"},
            "duration_s": 1.0,
        },
    }
    records = [
        {"event": "start", "stage": "versions"},
        finished,
        {"event": "start", "stage": "gpus"},
    ]
    stages = script._collect_stages(records, -6, False, 900)
    assert [s["status"] for s in stages] == ["pass", "fail", "skip", "skip", "skip", "skip"]
    assert "signal 6" in stages[1]["details"]["message"]


def test_long_logs_keep_head_and_tail() -> None:
    lines = [f"line {i}" for i in range(1000)]
    kept, truncated = script.trim_log(lines)
    assert truncated is True
    assert kept[0] == "line 0" and kept[-1] == "line 999"
    assert len(kept) == script.MAX_LOG_LINES + 1
