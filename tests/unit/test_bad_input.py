"""The bad-input corpus, through the CLI as a user types it: every case exits 2 with one
clear line on stderr, before any run starts and without any network connection.

Inventory cases are the folders of tests/fixtures/bad_inventories/ (each with the substring
its message must hold in expect.txt); command-line cases are listed below.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from tfgpu_provision import cli, runner

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bad_inventories"
INVENTORY_CASES = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())

# (case id, argv, a substring the one line must contain)
ARG_CASES: list[tuple[str, list[str], str]] = [
    ("unknown_release", ["plan", "-i", "local", "--tensorflow", "2.99"], "2.21"),
    ("release_2_2", ["plan", "-i", "local", "--tensorflow", "2.2"], "2.20"),
    (
        "removed_package",
        ["plan", "-i", "local", "--tensorflow", "tensorflow-gpu==2.12"],
        "tensorflow-gpu",
    ),
    ("garbage_version", ["plan", "-i", "local", "--tensorflow", "two"], "two"),
    ("empty_version", ["plan", "-i", "local", "--tensorflow", ""], "version"),
    ("too_many_parts", ["plan", "-i", "local", "--tensorflow", "2.21.0.0"], "2.21.0.0"),
    (
        "json_float_version",
        ["plan", "-i", "local", "-e", '{"tfgpu_tensorflow_version": 2.2}'],
        "2.20",
    ),
    (
        "unknown_option",
        ["plan", "-i", "local", "-e", "tfgpu_tensorflw_version=2.21"],
        "tfgpu_tensorflow_version",
    ),
    ("bad_choice", ["plan", "-i", "local", "-e", "tfgpu_cuda_source=cuda"], "tfgpu_cuda_source"),
    ("bad_bool", ["plan", "-i", "local", "-e", "tfgpu_require_gpu=maybe"], "tfgpu_require_gpu"),
    ("bad_int", ["plan", "-i", "local", "-e", "tfgpu_simulate_gpus=two"], "tfgpu_simulate_gpus"),
    (
        "conflicting_sources",
        [
            "plan",
            "-i",
            "local",
            "-e",
            "tfgpu_cuda_source=nvidia_repo",
            "-e",
            "tfgpu_cudnn_source=pip",
        ],
        "tfgpu_cudnn_source",
    ),
    (
        "venv_with_conda_cuda",
        [
            "plan",
            "-i",
            "local",
            "-e",
            "tfgpu_env_manager=venv",
            "-e",
            "tfgpu_cuda_source=conda",
            "-e",
            "tfgpu_cudnn_source=conda",
        ],
        "venv",
    ),
    ("bad_extra_vars_syntax", ["plan", "-i", "local", "-e", "not-a-pair"], "not-a-pair"),
    (
        "missing_extra_vars_file",
        ["plan", "-i", "local", "-e", "@/nonexistent/vars.yml"],
        "vars.yml",
    ),
    ("missing_inventory", ["plan", "-i", "no-such-lab"], "no-such-lab"),
    ("missing_inventory_path", ["plan", "-i", "/nonexistent/hosts.yml"], "/nonexistent/hosts.yml"),
    ("unknown_limit", ["plan", "-i", "local", "--limit", "ghost"], "ghost"),
    ("zero_forks", ["plan", "-i", "local", "--forks", "0"], "--forks"),
    (
        "missing_vault_file",
        ["plan", "-i", "local", "--vault-password-file", "/nonexistent/pw"],
        "vault",
    ),
    ("no_inventory", [], "--inventory"),
    ("matrix_unknown", ["matrix", "--tensorflow", "1.15"], "1.15"),
]


@pytest.fixture(autouse=True)
def no_contact(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Any run or network connection fails the test: bad input must touch nothing."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("bad input reached the runner or the network")

    monkeypatch.setattr(runner, "run", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("TFGPU_RUN_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


def test_corpus_is_large_enough() -> None:
    assert len(INVENTORY_CASES) + len(ARG_CASES) >= 30


@pytest.mark.parametrize("case", INVENTORY_CASES)
def test_bad_inventory_exits_2(
    case: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = FIXTURES / case
    target = (
        folder / "hosts.yml"
        if (folder / "hosts.yml").is_file() and case.startswith("empty")
        else folder
    )
    assert cli.main(["plan", "--inventory", str(target)]) == 2
    line = _one_line_error(capsys)
    for needle in (folder / "expect.txt").read_text().splitlines():
        if needle.strip():
            assert needle.strip() in line, (needle, line)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("case", "argv", "needle"), ARG_CASES, ids=[c[0] for c in ARG_CASES])
def test_bad_arguments_exit_2(
    case: str, argv: list[str], needle: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert cli.main(argv) == 2
    assert needle in _one_line_error(capsys)
    assert not (tmp_path / "runs").exists()
