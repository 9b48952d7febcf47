"""The CLI as a user meets it: help, matrix, and bad input refused with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tfgpu_provision import cli

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tfgpu_provision.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=dict(os.environ, COLUMNS="200"),
    )


def test_help_lists_the_commands() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    for word in ("matrix", "plan", "--inventory", "Exit codes"):
        assert word in proc.stdout


def test_matrix_json_for_2_21_has_the_acceptance_values() -> None:
    proc = run("matrix", "--tensorflow", "2.21", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    doc = json.loads(text)
    flat = json.dumps(doc)
    for needle in ('"12.5"', '"9.3"', '"3.10"', '"3.13"', '"525.60.13"', '"555.42.'):
        assert needle in flat, needle
    assert '"source"' in flat


def test_matrix_table_for_2_15() -> None:
    proc = run("matrix", "--tensorflow", "2.15")
    assert proc.returncode == 0, proc.stderr
    assert "12.2" in proc.stdout and "8.9" in proc.stdout


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["matrix", "--tensorflow", "2.99"], "2.21"),
        (["matrix", "--tensorflow", "2.2"], "2.20"),
        (["matrix", "--tensorflow", "tensorflow-gpu"], "tensorflow-gpu"),
        (["plan"], "--inventory"),
        (["plan", "--inventory", "no-such-inventory"], "no-such-inventory"),
        (["--inventory", "local", "--tensorflow", "2.99"], "2.99"),
        (["--inventory", "local", "-e", "tfgpu_cuda_source=cuda"], "tfgpu_cuda_source"),
        (
            ["--inventory", "local", "-e", "tfgpu_tensorflw_version=2.21"],
            "tfgpu_tensorflow_version",
        ),
        (["--inventory", "local", "--limit", "ghost"], "ghost"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv: list[str], needle: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tfgpu_provision.cli", *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=tmp_path,
        env=dict(os.environ, COLUMNS="400", TFGPU_RUN_DIR=str(tmp_path / "runs")),
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert needle in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 or argv == ["plan"], proc.stderr
    assert not (tmp_path / "runs").exists(), "bad input must not start a run"


def test_main_maps_errors_to_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["matrix", "--tensorflow", "2.99"]) == 2
    assert "error:" in capsys.readouterr().err
