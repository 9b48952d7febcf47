"""Doctor output: JSON conventions, the table, exit codes and the CLI on saved evidence."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tfgpu_provision.doctor import cli, report, tflog
from tfgpu_provision.doctor.evidence import from_document
from tfgpu_provision.errors import BadInput

from .test_doctor_rules import healthy, sandbox_driver_no_module


def write(tmp_path: Path, name: str, doc: dict[str, Any]) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc))
    return path


def test_json_has_schema_ranks_and_the_worst_exit_code() -> None:
    broken = sandbox_driver_no_module()
    broken["host"] = "b-node"
    reports = [report.examine(from_document(healthy())), report.examine(from_document(broken))]
    doc = json.loads(report.to_json(reports, "/runs/x"))
    assert doc["schema"] == "tfgpu-provision/doctor/1"
    assert doc["exit_code"] == 1
    assert [h["name"] for h in doc["hosts"]] == ["b-node", "node1"]
    first = doc["hosts"][0]
    assert first["findings"][0]["rank"] == 1
    assert first["findings"][0]["id"] == "module_not_loaded"
    assert {"evidence", "cause", "fix", "severity", "likelihood"} <= set(first["findings"][0])
    assert doc["hosts"][1]["status"] == "healthy" and doc["hosts"][1]["exit_code"] == 0
    assert "TensorFlow introspection skipped" in first["notes"][0]


def test_host_without_evidence_fails() -> None:
    lost = report.unreachable("gone", ["unreachable in 'Probe': ssh: connect refused"])
    assert lost.status == "no_evidence" and lost.exit_code == 1
    assert report.exit_code([report.examine(from_document(healthy())), lost]) == 1
    assert report.exit_code([]) == 1  # nothing examined is not healthy


def test_cli_on_saved_evidence_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path, "good", healthy())
    assert cli.main(["--evidence", str(good)]) == 0
    assert "healthy" in capsys.readouterr().out
    bad = write(tmp_path, "bad", sandbox_driver_no_module())
    assert cli.main(["--evidence", str(good), str(bad), "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["exit_code"] == 1


def test_cli_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--evidence", str(tmp_path / "missing.json")]) == 2
    other = write(tmp_path, "other", {"schema": "tfgpu-provision/plan/1"})
    assert cli.main(["--evidence", str(other)]) == 2
    assert "not a doctor evidence document" in capsys.readouterr().err
    assert cli.main([]) == 2  # neither --inventory nor --evidence
    good = write(tmp_path, "good", healthy())
    assert cli.main(["--inventory", "lab", "--evidence", str(good)]) == 2
    assert cli.main(["--inventory", "no-such-inventory-here"]) == 2


def test_table_shows_findings_in_rank_order(capsys: pytest.CaptureFixture[str]) -> None:
    doc = sandbox_driver_no_module()
    doc["preflight"]["host"]["secure_boot"] = "enabled"
    from rich.console import Console

    console = Console(width=160, record=True)
    console.print(report.render_table([report.examine(from_document(doc))]))
    text = console.export_text()
    assert text.index("Secure Boot is blocking") < text.index("Kernel module not loaded")
    assert "Fix:" in text and "node1: problems found" in text


def test_add_doctor_subparser_wires_the_handler() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cli.add_doctor_subparser(sub)
    args = parser.parse_args(["doctor", "--inventory", "lab", "--limit", "n1", "--format", "json"])
    assert args.handler is cli.cmd_doctor
    assert (args.inventory, args.limit, args.format) == ("lab", "n1", "json")


def test_tf_log_lines_become_findings_through_the_diagnose_module() -> None:
    doc = healthy()
    doc["tensorflow"]["log"] = [
        "I0000 cuda_executor.cc:1015] successful NUMA node read from SysFS had negative value "
        "(-1), but there must be at least one NUMA node, so returning NUMA node zero",
        "W0000 asm_compiler.cc:111] Couldn't get ptxas version : FAILED_PRECONDITION: "
        "Couldn't get ptxas/nvlink version string",
    ]
    found = tflog.findings(from_document(doc))
    assert [f.id for f in found] == ["tf_log:ptxas_missing"]  # the NUMA line is harmless
    assert found[0].source == "tf-log"
    assert "Couldn't get ptxas version" in found[0].evidence[0]
    result = report.examine(from_document(doc))
    assert [f.id for f in result.findings] == ["tf_log:ptxas_missing"]


def test_state_only_diagnoses_are_left_to_the_fact_rules() -> None:
    doc = healthy()
    doc["tensorflow"]["result"].update(built_with_cuda=False, gpus=[])
    doc["tensorflow"]["log"] = ["I0000 some unrelated line"]
    assert tflog.context(from_document(doc))["cuda_build"] is False
    assert tflog.findings(from_document(doc)) == []  # cpu_only_build has no log line
    top = report.examine(from_document(doc)).findings[0]
    assert top.id == "tensorflow_cpu_build"


def test_without_the_diagnose_module_there_are_no_log_findings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "tfgpu_provision.diagnose", None)  # import fails
    doc = healthy()
    doc["tensorflow"]["log"] = ["Couldn't invoke ptxas --version"]
    assert tflog.findings(from_document(doc)) == []


def test_evidence_document_must_carry_the_schema() -> None:
    with pytest.raises(BadInput):
        from_document({"host": "x"})
