"""Every Molecule scenario, run for real on sandbox hosts: create, converge, idempotence,
verify, destroy. A scenario directory is any molecule/<name>/ with a molecule.yml
(molecule/_shared holds the create/destroy playbooks they all use)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))
# Heavy scenarios (large real downloads) run in `make test-full` only.
SLOW = {"cuda_toolkit_distro"}


def _needs_sandbox() -> str | None:
    if os.geteuid() != 0:
        return "sandbox hosts need root"
    if not shutil.which("debootstrap"):
        return "debootstrap is missing: run `make setup`"
    return None


@pytest.mark.parametrize(
    "scenario",
    [pytest.param(s, marks=pytest.mark.slow) if s in SLOW else s for s in SCENARIOS],
)
def test_molecule_scenario(scenario: str) -> None:
    reason = _needs_sandbox()
    if reason:
        pytest.skip(reason)
    bin_dir = str(Path(sys.executable).parent)
    env = dict(
        os.environ, PATH=os.pathsep.join([bin_dir, os.environ.get("PATH", "")]), NO_COLOR="1"
    )
    proc = subprocess.run(
        [str(Path(bin_dir) / "molecule"), "test", "-s", scenario],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert "idempotence" in output


# Roles exercised on sandbox hosts by other tests instead of a scenario of their own.
COVERED_ELSEWHERE = {
    # molecule/cuda_toolkit and molecule/cudnn install from the (fixture) repo it sets up.
    "nvidia_repo": "molecule/cuda_toolkit/molecule.yml",
    "tf_env": "tests/integration/test_tf_env.py",
    "tf_verify": "tests/integration/test_end_to_end.py",
    "gpu_doctor": "tests/integration/test_doctor_sandbox.py",
    "apt_proxy": "tests/integration/test_apt_cache.py",
}


def test_every_role_is_tested_on_sandbox_hosts() -> None:
    roles = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "tasks").is_dir())
    missing = [
        r
        for r in roles
        if not any(s == r or s.startswith(f"{r}_") for s in SCENARIOS)
        and not (r in COVERED_ELSEWHERE and (REPO / COVERED_ELSEWHERE[r]).is_file())
    ]
    assert not missing, f"roles without a Molecule scenario or sandbox test: {missing}"
