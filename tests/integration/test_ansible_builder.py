"""execution-environment.yml builds a valid ansible-builder context holding the package."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_ansible_builder_create_makes_a_context_with_the_package(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(tmp_path / "dist"),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    shutil.copy(REPO / "execution-environment.yml", tmp_path)
    builder = Path(sys.executable).parent / "ansible-builder"
    proc = subprocess.run(
        [str(builder), "create", "-f", "execution-environment.yml", "-c", "context"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    context = tmp_path / "context"
    (containerfile,) = [
        p for p in (context / "Containerfile", context / "Dockerfile") if p.exists()
    ]
    text = containerfile.read_text()
    assert "COPY _build/tfgpu /tmp/tfgpu" in text
    assert "pip install --no-deps /tmp/tfgpu/*.whl" in text
    assert list((context / "_build" / "tfgpu").glob("tfgpu_provision-*.whl"))
    requirements = (context / "_build" / "requirements.txt").read_text()
    assert "jinja2" in requirements and "pyyaml" in requirements
