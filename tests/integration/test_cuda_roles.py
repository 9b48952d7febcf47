"""The RedHat-family side of nvidia_repo / cuda_toolkit / cudnn, which no reachable host can
run: every tasks file parses (ansible-playbook --syntax-check through static imports), and the
variables the roles compute from tfgpu_stack / tfgpu_host come out right for both OS families
(evaluated by ansible itself on localhost, nothing touched)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ROLES = ("nvidia_repo", "cuda_toolkit", "cudnn")


def _ansible_playbook(playbook: Path, *args: str) -> subprocess.CompletedProcess[str]:
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(REPO / "roles"), ANSIBLE_NOCOLOR="1")
    return subprocess.run(
        [
            str(bin_dir / "ansible-playbook"),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(playbook),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=REPO,
        timeout=300,
    )


def _stack(tf: str, cuda: str, cudnn: str, driver: str, family: str) -> dict[str, Any]:
    return {
        "tfgpu_stack": {
            "tensorflow": tf,
            "cuda": cuda,
            "cudnn": cudnn,
            "sources": {"driver": driver, "cuda": "nvidia_repo", "cudnn": "nvidia_repo"},
        },
        "tfgpu_host": {"os": {"family": family}},
        "nvidia_repo_base_url": "https://mirror.example/cuda/repos/rhel9/x86_64/",
    }


def test_every_tasks_file_passes_syntax_check_for_redhat(tmp_path: Path) -> None:
    plays = []
    for role in ROLES:
        tasks = sorted(p.stem for p in (REPO / "roles" / role / "tasks").glob("*.yml"))
        plays.append(
            {
                "name": f"Syntax of {role}",
                "hosts": "localhost",
                "gather_facts": False,
                "vars": _stack("2.21.0", "12.5", "9.3", "distro", "RedHat"),
                "tasks": [
                    {
                        "name": f"Import {role} {t}",
                        "ansible.builtin.import_role": {"name": role, "tasks_from": t},
                    }
                    for t in tasks
                ],
            }
        )
    playbook = tmp_path / "syntax.yml"
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    proc = _ansible_playbook(playbook, "--syntax-check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The RedHat files are really in the play, not skipped by a dynamic include.
    assert "setup-RedHat" in playbook.read_text()


_COMPUTED = {
    "nvidia_repo": [
        "__nvidia_repo_os_family",
        "__nvidia_repo_driver_priority",
        "__nvidia_repo_origin",
        "__nvidia_repo_lists_file",
        "__nvidia_repo_keyring_version",
    ],
    "cuda_toolkit": ["__cuda_toolkit_series", "__cuda_toolkit_package", "__cuda_toolkit_prefix"],
    "cudnn": [
        "__cudnn_package",
        "__cudnn_lib_package",
        "__cudnn_packages",
        "__cudnn_version_pattern",
        "__cudnn_tarball_parts",
    ],
}


def _computed(tmp_path: Path, host_vars: dict[str, Any]) -> dict[str, Any]:
    """Evaluate each role's defaults + vars/main.yml with the given facts, on localhost."""
    out = tmp_path / "computed.json"
    names = [n for role in ROLES for n in _COMPUTED[role]]
    play = {
        "name": "Compute role variables",
        "hosts": "localhost",
        "gather_facts": False,
        "vars_files": [
            str(REPO / "roles" / role / sub / "main.yml")
            for role in ROLES
            for sub in ("defaults", "vars")
        ],
        "tasks": [
            {
                "name": "Write the computed values",
                "ansible.builtin.copy": {
                    "dest": str(out),
                    "mode": "0644",
                    "content": "{{ {" + ", ".join(f"'{n}': {n}" for n in names) + "} | to_json }}",
                },
            }
        ],
    }
    playbook = tmp_path / "compute.yml"
    playbook.write_text(yaml.safe_dump([play], sort_keys=False))
    # Extra vars: above the roles' defaults, as inventory values and facts are in a real play.
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps(host_vars))
    proc = _ansible_playbook(playbook, "-e", f"@{inputs}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dict(json.loads(out.read_text()))


def test_computed_variables_for_a_cudnn9_stack_on_redhat(tmp_path: Path) -> None:
    values = _computed(tmp_path, _stack("2.21.0", "12.5", "9.3", "distro", "RedHat"))
    assert values["__nvidia_repo_os_family"] == "RedHat"
    # The driver comes from elsewhere: the repository's driver packages are excluded/pinned out.
    assert int(values["__nvidia_repo_driver_priority"]) == -1
    assert values["__nvidia_repo_origin"] == "mirror.example"
    assert values["__cuda_toolkit_package"] == "cuda-toolkit-12-5"
    assert values["__cuda_toolkit_prefix"] == "/usr/local/cuda-12.5"
    assert values["__cudnn_package"] == "cudnn9-cuda-12"
    assert values["__cudnn_packages"] == [
        "cudnn9-cuda-12",
        "libcudnn9-cuda-12",
        "libcudnn9-dev-cuda-12",
    ]


def test_computed_variables_for_a_cudnn8_stack_on_debian(tmp_path: Path) -> None:
    host_vars = _stack("2.15.1", "12.2", "8.9", "nvidia_repo", "Debian")
    host_vars["nvidia_repo_base_url"] = "http://127.0.0.1:8080/debian12/x86_64/"
    host_vars["cudnn_tarball_url"] = (
        "https://mirror.example/cudnn/cudnn-linux-x86_64-8.9.7.29_cuda12-archive.tar.xz"
    )
    values = _computed(tmp_path, host_vars)
    assert int(values["__nvidia_repo_driver_priority"]) == 600
    # apt quotes "_" in list file names.
    assert values["__nvidia_repo_lists_file"] == (
        "/var/lib/apt/lists/127.0.0.1:8080_debian12_x86%5f64_InRelease"
    )
    assert values["__nvidia_repo_keyring_version"] == "1.1-1"
    assert values["__cuda_toolkit_series"] == "12.2"
    assert values["__cudnn_packages"] == ["libcudnn8"]
    pattern = values["__cudnn_version_pattern"]
    assert re.match(pattern, "8.9.7.29-1+cuda12.2")
    assert not re.match(pattern, "8.9.7.29-1+cuda11.8")
    assert not re.match(pattern, "8.6.0.163-1+cuda12.2")
    assert values["__cudnn_tarball_parts"] == [["8.9", "12"]]
