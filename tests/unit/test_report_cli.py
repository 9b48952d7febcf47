"""`tfgpu-provision report [RUN] --format ...` over sample run directories.

The command is exercised through a parser built the way ``cli.build_parser`` hangs
subcommands (``add_report_subparser`` + the ``handler`` default), with ``cli.main``'s
error handling: a ``TfgpuError`` becomes its exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tfgpu_provision.errors import TfgpuError
from tfgpu_provision.report.cli import add_report_subparser

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "report"


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="tfgpu-provision")
    parser.add_argument("--run-dir", type=Path, default=None)
    add_report_subparser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except TfgpuError as exc:
        print(f"error: {exc}")
        return exc.exit_code


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """Three runs under a run root; the gpu-less failure is the newest."""
    root = tmp_path / "runs"
    order = [
        ("20250101-100000-site", "sample-sim-2host-pass"),
        ("20250101-110000-site", "sample-8gpu-one-slow"),
        ("20250101-120000-site", "sample-gpuless-fail"),
    ]
    for i, (name, sample) in enumerate(order):
        shutil.copytree(FIXTURES / sample, root / name)
        stamp = 1_700_000_000 + i * 60
        os.utime(root / name / "summary.json", (stamp, stamp))
    (root / "not-a-run").mkdir()
    return root


def test_latest_run_is_the_default(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli("--run-dir", str(runs), "report", "--format", "json")
    doc = json.loads(capsys.readouterr().out)
    assert doc["run"]["name"] == "20250101-120000-site"
    assert code == doc["exit_code"] == 1


def test_latest_follows_the_summary_time_not_the_name(
    runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stamp = 1_800_000_000
    os.utime(runs / "20250101-100000-site" / "summary.json", (stamp, stamp))
    assert run_cli("report", "--run-dir", str(runs), "--format", "json") == 0
    assert json.loads(capsys.readouterr().out)["run"]["name"] == "20250101-100000-site"


def test_run_by_name_and_by_path(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run_cli("report", "20250101-110000-site", "--run-dir", str(runs), "--format", "junit") == 0
    )
    root = ET.fromstring(capsys.readouterr().out)
    assert {c.get("classname") for c in root.iter("testcase")} == {"dgx-a"}
    path = runs / "20250101-100000-site"
    assert run_cli("report", str(path), "--format", "markdown") == 0
    assert "| sbx-1 | simulated (no GPU) |" in capsys.readouterr().out


def test_unique_part_of_a_name_is_enough(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("report", "110000", "--run-dir", str(runs), "--format", "json") == 0
    assert json.loads(capsys.readouterr().out)["hosts"][0]["name"] == "dgx-a"


def test_run_dir_works_before_and_after_the_command(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    # After the command it wins over one given before it.
    assert run_cli("--run-dir", str(empty), "report", "--run-dir", str(runs)) == 1
    assert "1 fail, 1 unreachable; exit code 1" in capsys.readouterr().out
    assert run_cli("--run-dir", str(empty), "report") == 2


def test_default_run_root_comes_from_the_environment(
    runs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TFGPU_RUN_DIR", str(runs))
    assert run_cli("report", "--format", "json") == 1
    assert json.loads(capsys.readouterr().out)["run"]["name"] == "20250101-120000-site"


def test_table_is_the_default_format(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("report", "20250101-100000-site", "--run-dir", str(runs)) == 0
    out = capsys.readouterr().out
    assert "2 simulated; exit code 0" in out and "sbx-2" in out


@pytest.mark.parametrize("name", ["no-such-run", "2025", "not-a-run"])
def test_bad_run_is_exit_2_naming_what_exists(
    runs: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("report", name, "--run-dir", str(runs)) == 2
    out = capsys.readouterr().out
    assert name in out
    if name != "not-a-run":
        assert "20250101-120000-site" in out and "20250101-100000-site" in out


def test_no_runs_at_all_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("report", "--run-dir", str(tmp_path / "empty")) == 2
    assert "no runs under" in capsys.readouterr().out


def test_write_rewrites_the_report_files(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = runs / "20250101-110000-site"
    assert run_cli("report", str(run), "--format", "html", "--write") == 0
    assert "<svg" in capsys.readouterr().out
    assert sorted(p.name for p in run.glob("report.*")) == [
        "report.html",
        "report.json",
        "report.md",
        "report.xml",
    ]
