"""The run model: verdicts per host and the exit code, from hand-written sample run dirs."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tfgpu_provision.errors import BadInput
from tfgpu_provision.report import (
    CHECKS,
    FAIL,
    NOT_VERIFIED,
    PASS,
    REBOOT_PENDING,
    SIMULATED,
    UNREACHABLE,
    load_run,
)
from tfgpu_provision.report.model import flag_slow_devices

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "report"
SIM = FIXTURES / "sample-sim-2host-pass"
GPULESS = FIXTURES / "sample-gpuless-fail"
EIGHT = FIXTURES / "sample-8gpu-one-slow"


def _read(path: Path) -> Any:
    return json.loads(path.read_text())


def make_run(
    tmp_path: Path,
    hosts: list[dict[str, Any]],
    verify: dict[str, Any] | None = None,
    name: str = "20250101-000000-site",
    **summary: Any,
) -> Path:
    run = tmp_path / name
    (run / "verify").mkdir(parents=True)
    doc = {"status": "successful", "finished": True, "cancelled": False, "guard_errors": []}
    doc.update(summary)
    doc["hosts"] = hosts
    (run / "summary.json").write_text(json.dumps(doc))
    for host, body in (verify or {}).items():
        text = body if isinstance(body, str) else json.dumps(body)
        (run / "verify" / f"{host}.json").write_text(text)
    return run


def host_entry(name: str, status: str = "ok", **kw: Any) -> dict[str, Any]:
    entry = {"name": name, "status": status, "ok": 10, "changed": 0, "failed": 0}
    entry.update(kw)
    return entry


def gpu_doc() -> dict[str, Any]:
    return copy.deepcopy(_read(EIGHT / "verify" / "dgx-a.json"))


def test_simulated_fixture_is_simulated_not_pass_and_exits_0() -> None:
    report = load_run(SIM)
    assert [h.verdict for h in report.hosts] == [SIMULATED, SIMULATED]
    assert report.exit_code == 0
    for host in report.hosts:
        assert host.simulated and host.simulated_devices == 2 and host.gpu_devices == 0
        assert host.tensorflow == "2.21.0"
        assert (host.build_cuda, host.build_cudnn) == ("12.5.1", "9")
        assert host.matmul_ok and host.all_reduce_ok and host.keras_loss_falling
        assert all(d.simulated for d in host.device_results)


def test_gpuless_fixture_fails_and_quotes_the_log() -> None:
    report = load_run(GPULESS)
    verdicts = {h.name: h.verdict for h in report.hosts}
    assert verdicts == {"sbx-1": FAIL, "sbx-2": UNREACHABLE}
    assert report.exit_code == 1
    sbx1 = report.hosts[0]
    assert "gpus_visible" in sbx1.reason
    evidence = [line for d in sbx1.diagnoses for line in d.evidence]
    assert any("CUDA_ERROR_NO_DEVICE" in line for line in evidence)
    assert all(d.fix for d in sbx1.diagnoses)
    unreachable = report.hosts[1]
    assert "Connection refused" in unreachable.reason
    assert {c.status for c in unreachable.checks[1:]} == {"not_run"}


def test_eight_gpu_fixture_passes_and_flags_only_gpu5() -> None:
    report = load_run(EIGHT)
    (host,) = report.hosts
    assert host.verdict == PASS and report.exit_code == 0
    assert host.gpu_devices == 8
    assert host.device_results[0].model == "NVIDIA H100 80GB HBM3"
    slow = [d.index for d in host.device_results if d.slow]
    assert slow == [5]
    assert "0.47x" in host.device_results[5].slow_reason


def test_every_host_has_every_check_in_order() -> None:
    for run in (SIM, GPULESS, EIGHT):
        for host in load_run(run).hosts:
            assert tuple(c.name for c in host.checks) == CHECKS


def test_simulated_is_never_pass_even_when_only_a_stage_says_so(tmp_path: Path) -> None:
    doc = gpu_doc()
    doc["stages"][3]["simulated"] = True  # one stage ran on logical devices
    run = make_run(tmp_path, [host_entry("dgx-a")], {"dgx-a": doc})
    assert load_run(run).hosts[0].verdict == SIMULATED


def test_pass_without_any_gpu_device_is_a_failure(tmp_path: Path) -> None:
    doc = gpu_doc()
    doc["devices"] = [{"name": "/physical_device:CPU:0", "device_type": "CPU", "simulated": False}]
    run = make_run(tmp_path, [host_entry("dgx-a")], {"dgx-a": doc})
    report = load_run(run)
    assert report.hosts[0].verdict == FAIL
    assert "no GPU" in report.hosts[0].reason
    assert report.exit_code == 1


def test_failed_stage_fails_even_if_the_document_says_pass(tmp_path: Path) -> None:
    doc = gpu_doc()
    doc["stages"][3] = {
        "name": "all_reduce",
        "status": "fail",
        "details": {"expected": 36.0, "got": 30.0, "correct": False},
    }
    run = make_run(tmp_path, [host_entry("dgx-a")], {"dgx-a": doc})
    host = load_run(run).hosts[0]
    assert host.verdict == FAIL
    assert host.all_reduce_ok is False
    assert "expected 36.0, got 30.0" in host.reason


def test_reboot_pending_from_the_host_errors(tmp_path: Path) -> None:
    errors = [
        {
            "task": "nvidia_driver : Report reboot pending",
            "message": "Driver 535 installed; reboot pending (tfgpu_reboot: never).",
            "kind": "failed",
        }
    ]
    run = make_run(tmp_path, [host_entry("gpu-1", "failed", failed=1, errors=errors)])
    report = load_run(run)
    host = report.hosts[0]
    assert host.verdict == REBOOT_PENDING
    assert any(d.id == "REBOOT_PENDING" and "reboot" in d.fix.lower() for d in host.diagnoses)
    assert host.checks[0].status == "fail"
    assert report.exit_code == 1


def test_missing_verify_document_when_verify_was_expected(tmp_path: Path) -> None:
    run = make_run(tmp_path, [host_entry("a"), host_entry("b")], {"a": gpu_doc()})
    report = load_run(run)
    assert {h.name: h.verdict for h in report.hosts} == {"a": PASS, "b": NOT_VERIFIED}
    assert report.verify_expected
    assert report.exit_code == 1


def test_preflight_only_run_does_not_require_verify(tmp_path: Path) -> None:
    run = make_run(tmp_path, [host_entry("a")], name="20250101-000000-plan")
    report = load_run(run)
    assert report.hosts[0].verdict == NOT_VERIFIED
    assert not report.verify_expected
    assert report.exit_code == 0
    # An explicit flag in the summary wins over the directory name.
    run2 = make_run(tmp_path / "x", [host_entry("a")], name="whatever", verify_expected=True)
    assert load_run(run2).exit_code == 1


def test_unreadable_verify_document_is_a_failure(tmp_path: Path) -> None:
    run = make_run(tmp_path, [host_entry("a")], {"a": "{not json"})
    host = load_run(run).hosts[0]
    assert host.verdict == FAIL
    assert any(d.id == "VERIFY_UNREADABLE" for d in host.diagnoses)


def test_minimal_documents_do_not_crash(tmp_path: Path) -> None:
    run = make_run(
        tmp_path,
        [{"name": "a"}, {"name": "b", "status": "ok", "preflight": {"host": None}}],
        {"a": {"status": "pass"}, "b": {"stages": "nonsense", "devices": [1, None]}},
    )
    report = load_run(run)
    verdicts = {h.name: h.verdict for h in report.hosts}
    # "a" says pass but ran on no GPU; "b" has no status at all: neither is a pass.
    assert verdicts == {"a": FAIL, "b": FAIL}


def test_verify_document_for_a_host_missing_from_the_summary(tmp_path: Path) -> None:
    run = make_run(tmp_path, [], {"ghost": gpu_doc()})
    report = load_run(run)
    (host,) = report.hosts
    assert host.name == "ghost" and host.verdict == PASS
    assert host.checks[0].status == "not_run"


@pytest.mark.parametrize(
    ("summary", "code"),
    [
        ({"cancelled": True}, 130),
        ({"finished": False}, 1),
        ({"guard_errors": ["ansible-core too old"]}, 1),
    ],
)
def test_run_level_exit_codes(tmp_path: Path, summary: dict[str, Any], code: int) -> None:
    run = make_run(tmp_path, [host_entry("dgx-a")], {"dgx-a": gpu_doc()}, **summary)
    assert load_run(run).exit_code == code


def test_not_a_run_directory_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput) as info:
        load_run(tmp_path)
    assert info.value.exit_code == 2
    (tmp_path / "summary.json").write_text("[]")
    with pytest.raises(BadInput):
        load_run(tmp_path)


def test_slow_flag_needs_peers_of_the_same_model() -> None:
    report = load_run(EIGHT)
    devices = report.hosts[0].device_results
    for d in devices:
        d.slow = False
    devices[1].model = "another model"
    flag_slow_devices(devices[:2])  # two different models: nobody to compare with
    assert not any(d.slow for d in devices)
    flag_slow_devices(devices[2:])  # GPUs 2-7, one slow among them
    assert [d.index for d in devices if d.slow] == [5]


def variant_doc() -> dict[str, Any]:
    """A verify document in the shape of the check script's first draft (stage names gpus,
    allreduce, keras; per-precision matmul results; build info at the top; log as a dict)."""
    gpus = [f"/physical_device:GPU:{i}" for i in range(2)]
    return {
        "schema": "tfgpu-provision/verify/1",
        "status": "pass",
        "simulated": False,
        "host": "node-a.example",
        "arguments": {"expected_gpus": 2},
        "versions": {"tensorflow": "2.21.0", "python": "3.12.3"},
        "build": {"cuda_version": "12.5.1", "cudnn_version": "9"},
        "devices": [
            {"name": g, "kind": "GPU", "simulated": False, "device_name": "NVIDIA A100-SXM4-80GB"}
            for g in gpus
        ],
        "stages": [
            {"name": "versions", "status": "pass", "simulated": False, "details": {}},
            {"name": "gpus", "status": "pass", "simulated": False, "details": {}},
            {
                "name": "matmul",
                "status": "pass",
                "simulated": False,
                "details": {
                    "devices": [
                        {
                            "device": g,
                            "status": "pass",
                            "fp32": {"ok": True, "max_abs_error": 0.002, "tflops": 120.0 - i},
                            "bf16": {"ok": True, "tflops": 250.0},
                        }
                        for i, g in enumerate(gpus)
                    ]
                },
            },
            {
                "name": "allreduce",
                "status": "pass",
                "simulated": False,
                "details": {"warning": "all-reduce uses ReductionToOneDevice, not NCCL"},
            },
            {
                "name": "keras",
                "status": "pass",
                "simulated": False,
                "details": {"losses": [1.0, 0.5], "loss_fell": True},
            },
            {"name": "placement", "status": "pass", "simulated": False, "details": {}},
        ],
        "diagnoses": [
            {"id": "numa", "severity": "info", "cause": "harmless NUMA note", "lines": ["x"]}
        ],
        "log": {"lines": ["line 1", "line 2"], "truncated": False},
    }


def test_the_script_draft_shape_reads_the_same(tmp_path: Path) -> None:
    run = make_run(tmp_path, [host_entry("node-a")], {"node-a": variant_doc()})
    host = load_run(run).hosts[0]
    assert host.verdict == PASS
    assert tuple(c.name for c in host.checks) == CHECKS
    assert (host.build_cuda, host.expected_gpus, host.gpu_devices) == ("12.5.1", 2, 2)
    assert [d.tflops_fp32 for d in host.device_results] == [120.0, 119.0]
    assert [d.tflops_bf16 for d in host.device_results] == [250.0, 250.0]
    assert host.device_results[0].model == "NVIDIA A100-SXM4-80GB"
    assert host.matmul_ok and host.all_reduce_ok and host.keras_loss_falling
    assert host.log_tail == ["line 1", "line 2"]
    assert not host.diagnoses  # an info note is not a failure cause...
    codes = {w["code"] for w in host.warnings}
    assert {"numa", "ALL_REDUCE_WARNING"} <= codes  # ...but it is shown


def test_the_script_draft_shape_failing_matmul(tmp_path: Path) -> None:
    doc = variant_doc()
    row = doc["stages"][2]["details"]["devices"][1]
    row["fp32"]["ok"] = False
    row["status"] = "fail"
    doc["stages"][2]["status"] = "fail"
    doc["status"] = "fail"
    run = make_run(tmp_path, [host_entry("node-a")], {"node-a": doc})
    host = load_run(run).hosts[0]
    assert host.verdict == FAIL
    assert [d.correct for d in host.device_results] == [True, False]
    assert host.matmul_ok is False
