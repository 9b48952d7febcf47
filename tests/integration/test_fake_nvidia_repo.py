"""The FAKE NVIDIA CUDA repository (a test fixture, tests/fixtures/fake_nvidia_repo) is a real,
signed apt repository: it builds, serves on 127.0.0.1, a sandbox host's apt trusts it through
``signed-by`` only, and the same index unsigned or signed by another key is REJECTED by apt,
so the signature checks the nvidia_repo role relies on are real."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "fake_nvidia_repo" / "fake_nvidia_repo.py"
LAB = "cuda-it"
SERVER = "cuda-it"


def _fixture(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(FIXTURE), *args], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


@pytest.fixture(scope="module")
def served() -> Iterator[dict[str, Any]]:
    for tool in ("dpkg-deb", "gpg", "gpgv"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is missing")
    info = _fixture("start", "--name", SERVER)
    try:
        yield info
    finally:
        _fixture("stop", "--name", SERVER)


def test_index_lists_nvidia_named_packages_and_is_signed(served: dict[str, Any]) -> None:
    base = served["base_url"]
    with urllib.request.urlopen(base + "Packages.gz", timeout=10) as resp:
        index = gzip.decompress(resp.read()).decode()
    names = {line.split(": ", 1)[1] for line in index.splitlines() if line.startswith("Package:")}
    assert {"cuda-keyring", "cuda-drivers-535", "cuda-toolkit-12-5", "cudnn9-cuda-12"} <= names
    assert "Version: 8.9.7.29-1+cuda12.2" in index
    assert all("FAKE" in line for line in index.splitlines() if line.startswith("Description:"))

    inrelease = Path(served["www"]) / served["repo_path"] / "InRelease"
    good = subprocess.run(
        ["gpgv", "--keyring", served["public_keyring"], str(inrelease)],
        capture_output=True,
        check=False,
    )
    wrong = subprocess.run(
        ["gpgv", "--keyring", served["wrong_public_keyring"], str(inrelease)],
        capture_output=True,
        check=False,
    )
    assert good.returncode == 0, good.stderr
    assert wrong.returncode != 0


def test_start_reuses_a_running_server(served: dict[str, Any]) -> None:
    again = _fixture("start", "--name", SERVER)
    assert again["started"] is False
    assert again["port"] == served["port"]


def _needs_sandbox() -> str | None:
    if os.geteuid() != 0:
        return "sandbox hosts need root"
    if not shutil.which("debootstrap"):
        return "debootstrap is missing: run `make setup`"
    return None


@pytest.fixture(scope="module")
def host() -> Iterator[list[str]]:
    reason = _needs_sandbox()
    if reason:
        pytest.skip(reason)
    sandbox = [sys.executable, "-m", "tfgpu_provision.sandbox"]
    subprocess.run([*sandbox, "up", "--name", LAB, "--hosts", "1"], check=True, cwd=REPO)
    try:
        inventory = Path.home() / ".cache/tfgpu-provision/sandbox" / LAB / "inventory.yml"
        hosts = yaml.safe_load(inventory.read_text())["all"]["children"]["gpu_nodes"]["hosts"]
        node = next(iter(hosts.values()))
        yield [
            "ssh", "-q", "-i", node["ansible_ssh_private_key_file"],
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-p", str(node["ansible_port"]),
            f"{node['ansible_user']}@{node['ansible_host']}",
        ]  # fmt: skip
    finally:
        subprocess.run([*sandbox, "down", "--name", LAB], check=False, cwd=REPO)


def _on(host: list[str], script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*host, script],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _apt_update(host: list[str], base_url: str, keyring: str) -> subprocess.CompletedProcess[str]:
    """apt-get update of this one source only, trusted through signed-by."""
    source = f"Types: deb\nURIs: {base_url}\nSuites: /\nSigned-By: {keyring}\n"
    return _on(
        host,
        f"set -e; mkdir -p /tmp/none.d; printf '%s' '{source}' > /tmp/fake.sources; "
        "rm -rf /var/lib/apt/lists/127.0.0.1*; "
        "apt-get update -o Dir::Etc::SourceList=/tmp/fake.sources "
        "-o Dir::Etc::SourceParts=/tmp/none.d 2>&1; "
        "apt-cache -o Dir::Etc::SourceList=/tmp/fake.sources -o Dir::Etc::SourceParts=/tmp/none.d "
        "madison cuda-toolkit-12-5",
    )


@pytest.fixture(scope="module")
def keyrings(host: list[str], served: dict[str, Any]) -> dict[str, str]:
    paths = {"good": "/usr/share/keyrings/fake-nvidia-test.gpg", "wrong": "/tmp/wrong.gpg"}
    for which, local in (("good", "public_keyring"), ("wrong", "wrong_public_keyring")):
        data = Path(served[local]).read_bytes()
        proc = subprocess.run(
            [*host, f"cat > {paths[which]}"], input=data, capture_output=True, check=False
        )
        assert proc.returncode == 0, proc.stderr
    return paths


def test_apt_accepts_the_signed_repo_through_signed_by(
    host: list[str], served: dict[str, Any], keyrings: dict[str, str]
) -> None:
    proc = _apt_update(host, served["base_url"], keyrings["good"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "12.5.1-1" in proc.stdout and "12.5.0-1" in proc.stdout


def test_apt_rejects_a_repo_signed_by_another_key(
    host: list[str], served: dict[str, Any], keyrings: dict[str, str]
) -> None:
    proc = _apt_update(host, served["wrong_key_base_url"], keyrings["good"])
    assert proc.returncode != 0
    assert "NO_PUBKEY" in proc.stdout or "not signed" in proc.stdout, proc.stdout


def test_apt_rejects_the_right_repo_with_the_wrong_keyring(
    host: list[str], served: dict[str, Any], keyrings: dict[str, str]
) -> None:
    proc = _apt_update(host, served["base_url"], keyrings["wrong"])
    assert proc.returncode != 0
    assert "12.5.1-1" not in proc.stdout


def test_apt_rejects_an_unsigned_repo(
    host: list[str], served: dict[str, Any], keyrings: dict[str, str]
) -> None:
    proc = _apt_update(host, served["unsigned_base_url"], keyrings["good"])
    assert proc.returncode != 0
    assert "is not signed" in proc.stdout, proc.stdout
