"""Replay of real recorded ansible-runner event streams (see tests/fixtures/runner/record.py)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tfgpu_provision import events, plan
from tfgpu_provision.errors import EXIT_HOST_FAILED, EXIT_INTERRUPTED, EXIT_OK

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runner"


def load(name: str) -> list[dict[str, object]]:
    files = sorted((FIXTURES / name).glob("*.json"))
    assert files, f"no recorded events in {FIXTURES / name}"
    return [json.loads(p.read_text()) for p in files]


def test_replay_of_a_successful_preflight_gives_one_ok_host() -> None:
    model = events.replay(load("preflight_local_ok"))
    assert model.finished
    assert list(model.hosts) == ["localhost"] or set(model.hosts) == {"localhost"}
    host = model.hosts["localhost"]
    assert host.status == "ok"
    assert host.failed == 0 and host.unreachable == 0 and host.ok >= 1
    assert host.preflight is not None
    assert host.preflight["host"]["gpu_count"] == 0
    assert host.preflight["resolution"]["stack"]["tensorflow"].startswith("2.")
    assert model.exit_code() == EXIT_OK


def test_replay_of_a_require_gpu_failure_names_host_and_reason() -> None:
    model = events.replay(load("preflight_local_require_gpu"))
    host = model.hosts["localhost"]
    assert host.status == "failed"
    assert model.exit_code() == EXIT_HOST_FAILED
    assert any("No NVIDIA GPU" in e["message"] for e in host.errors)
    assert host.preflight is not None
    assert host.preflight["failures"][0]["code"] == "NO_GPU_REQUIRED"


def test_replay_order_does_not_matter() -> None:
    recorded = load("preflight_local_ok")
    forward = events.replay(recorded).to_dict()
    backward = events.replay(list(reversed(recorded))).to_dict()
    assert forward == backward


def test_a_stream_cut_before_the_stats_is_not_a_success() -> None:
    recorded = [e for e in load("preflight_local_ok") if e["event"] != "playbook_on_stats"]
    model = events.replay(recorded)
    assert not model.finished
    assert model.exit_code() == EXIT_HOST_FAILED


def test_cancelled_run_exits_130() -> None:
    model = events.replay(load("preflight_local_ok"))
    model.cancelled = True
    assert model.exit_code() == EXIT_INTERRUPTED


def test_unreachable_host_from_stats_fails_the_run() -> None:
    model = events.RunModel()
    model.apply(
        {
            "event": "runner_on_unreachable",
            "counter": 1,
            "event_data": {
                "host": "n1",
                "task": "Probe",
                "res": {"msg": "ssh: connect to host 192.0.2.1 port 22: Connection timed out"},
            },
        }
    )
    model.apply(
        {
            "event": "playbook_on_stats",
            "counter": 2,
            "event_data": {"dark": {"n1": 1}, "ok": {"n2": 3}},
        }
    )
    assert model.hosts["n1"].status == "unreachable"
    assert model.hosts["n2"].status == "ok"
    assert "timed out" in model.hosts["n1"].errors[0]["message"]
    assert model.exit_code() == EXIT_HOST_FAILED


def test_plan_json_from_recorded_run_says_no_gpu() -> None:
    doc = json.loads(plan.to_json(events.replay(load("preflight_local_ok"))))
    assert doc["schema"] == plan.PLAN_SCHEMA
    (host,) = doc["hosts"]
    assert host["facts"]["gpu_count"] == 0
    assert host["resolution"]["stack"]["cuda"]


def test_recorded_fixtures_hold_no_machine_paths() -> None:
    for path in FIXTURES.rglob("*.json"):
        text = path.read_text()
        assert str(Path.home()) + "/" not in text or str(Path.home()) == "/", path
        assert socket.gethostname() not in text or socket.gethostname() == "localhost", path


@pytest.mark.parametrize("name", ["preflight_local_ok", "preflight_local_require_gpu"])
def test_fixture_was_recorded_from_a_real_run(name: str) -> None:
    kinds = {e["event"] for e in load(name)}
    assert {"playbook_on_start", "playbook_on_task_start", "playbook_on_stats"} <= kinds
