"""The built wheel carries the Ansible content, so an installed tfgpu-provision works
outside the repository: the wheel is built, installed into a scratch directory, and run from
an unrelated working directory against the packaged inventory/local."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (whl,) = out.glob("tfgpu_provision-*.whl")
    return whl


def test_wheel_carries_every_tracked_content_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(
        ["git", "ls-files", "ansible.cfg", "playbooks", "roles", "inventory"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert tracked, "git ls-files found no content"
    missing = [p for p in tracked if f"tfgpu_provision/_content/{p}" not in names]
    assert not missing, missing
    assert "tfgpu_provision/compat/matrix.yaml" in names
    assert "tfgpu_provision/options.yaml" in names


def test_installed_wheel_plans_outside_the_repo(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(target), TFGPU_RUN_DIR=str(tmp_path / "runs"))
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "from tfgpu_provision import inventory; print(inventory.content_root())",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where) == target / "tfgpu_provision" / "_content"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfgpu_provision.cli",
            "plan",
            "--inventory",
            "local",
            "--format",
            "json",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (host,) = json.loads(proc.stdout)["hosts"]
    assert host["name"] == "localhost" and host["facts"]["gpu_count"] == 0
