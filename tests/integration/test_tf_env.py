"""tf_env on a real sandbox host, venv manager, installing from the controller's wheelhouse.

A tiny requirement (six, then six + idna) stands in for TensorFlow so the test stays quick;
the role does the same with tensorflow[and-cuda]. The wheelhouse is served from this
machine on 127.0.0.1 and the host installs with --no-index, so every wheel it gets comes
from the served directory (the server's request log proves it).

Needs root and debootstrap (the sandbox); the host's first run installs python3.11-venv
from Debian's archive.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ansible_runner
import pytest

from tfgpu_provision import wheelhouse
from tfgpu_provision.sandbox import lab as labs

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
WHEELS = ["six==1.17.0", "idna==3.10"]


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "tf_env integration tests need root (sandbox hosts)"
    if shutil.which("debootstrap") is None:
        return "tf_env integration tests need debootstrap (apt-get install debootstrap)"
    return None


needs_root = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


@pytest.fixture(scope="module")
def lab() -> Iterator[labs.Lab]:
    if _missing():
        pytest.skip(_missing() or "")
    name = f"env{uuid.uuid4().hex[:6]}"
    proc = subprocess.run(
        [sys.executable, "-m", "tfgpu_provision.sandbox", "up", "--name", name, "--hosts", "1"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        yield labs.Lab.load(name)
    finally:
        subprocess.run(
            [sys.executable, "-m", "tfgpu_provision.sandbox", "down", "--name", name],
            capture_output=True,
            timeout=300,
            check=False,
        )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    path = wheelhouse.build(WHEELS, "3.11", cache_root=tmp_path_factory.mktemp("wheelhouse"))
    requests: list[str] = []
    with wheelhouse.serve(path, requests=requests) as url:
        yield url, requests


def play(
    lab: labs.Lab, tmp: Path, playbook: str, extravars: dict[str, Any]
) -> tuple[int, dict[str, int], str]:
    """Run a playbook on the lab: (rc, changed/failures/ok for the host, stdout)."""
    work = tmp / f"runner-{uuid.uuid4().hex[:6]}"
    work.mkdir()
    run = ansible_runner.run(
        private_data_dir=str(work),
        playbook=playbook,
        inventory=str(lab.inventory),
        extravars=extravars,
        envvars={"ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
        quiet=True,
    )
    host = lab.nodes[0].name
    counts = {
        k: int((run.stats or {}).get(k, {}).get(host, 0)) for k in ("changed", "failures", "ok")
    }
    return run.rc, counts, run.stdout.read()


def ssh(lab: labs.Lab, command: str) -> str:
    proc = subprocess.run(
        lab.ssh_argv("1", [command]), capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"{command!r}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def state(lab: labs.Lab, path: str = "/opt/tfgpu/envs/tf-gpu") -> dict[str, Any]:
    return dict(json.loads(ssh(lab, f"cat {path}/.tfgpu-env.json")))


@needs_root
def test_venv_env_from_the_wheelhouse_builds_keeps_and_switches(
    lab: labs.Lab, served: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, requests = served
    env_playbook = str(REPO / "playbooks" / "env.yml")
    first = {"tf_env_requirements": ["six==1.17.0"], "tf_env_pip_find_links": url}

    rc, counts, out = play(lab, tmp_path, env_playbook, first)
    assert rc == 0, out[-4000:]
    assert counts["changed"] > 0
    assert any(r.startswith("/six-1.17.0-") for r in requests), requests
    one = state(lab)
    assert one["spec"]["manager"] == "venv"
    assert one["spec"]["python"] == "3.11"
    assert one["previous_prefix"] is None
    assert ssh(lab, "readlink /opt/tfgpu/envs/tf-gpu").strip() == one["prefix"]
    assert ssh(lab, f"test ! -e {one['prefix']}.partial && echo gone").strip() == "gone"
    assert ssh(lab, "tfgpu-env python -c 'import six; print(six.__version__)'").strip() == "1.17.0"
    # Console scripts were pointed at the final prefix before the rename.
    assert ssh(lab, "tfgpu-env pip --version").startswith("pip ")

    rc, counts, out = play(lab, tmp_path, env_playbook, first)
    assert rc == 0, out[-4000:]
    assert counts["changed"] == 0, out[-4000:]

    second = {**first, "tf_env_requirements": WHEELS}
    rc, counts, out = play(lab, tmp_path, env_playbook, second)
    assert rc == 0, out[-4000:]
    two = state(lab)
    assert two["prefix"] != one["prefix"]
    assert two["previous_prefix"] == one["prefix"]
    assert ssh(lab, "readlink /opt/tfgpu/envs/tf-gpu").strip() == two["prefix"]
    assert (
        ssh(lab, "tfgpu-env python -c 'import idna, six; print(idna.__version__)'").strip()
        == "3.10"
    )
    # The previous env stays until verify passed, untouched.
    assert state(lab, one["prefix"])["spec_hash"] == one["spec_hash"]

    cleanup = tmp_path / "cleanup.yml"
    cleanup.write_text(
        "- name: Remove the previous env\n"
        "  ansible.builtin.import_playbook: " + str(REPO / "playbooks" / "env.yml") + "\n"
        "- name: Clean up\n"
        "  hosts: gpu_nodes\n"
        "  gather_facts: false\n"
        "  tasks:\n"
        "    - name: Remove the env the switch replaced\n"
        "      ansible.builtin.include_role:\n"
        "        name: tf_env\n"
        "        tasks_from: cleanup-previous\n"
    )
    rc, counts, out = play(lab, tmp_path, str(cleanup), second)
    assert rc == 0, out[-4000:]
    assert ssh(lab, f"test ! -e {one['prefix']} && echo gone").strip() == "gone"
    assert state(lab)["previous_prefix"] is None

    rc, counts, out = play(lab, tmp_path, env_playbook, second)
    assert rc == 0, out[-4000:]
    assert counts["changed"] == 0, out[-4000:]
