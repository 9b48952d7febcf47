"""The FAKE NVIDIA repository's package list (tests/fixtures/fake_nvidia_repo/packages.yaml)
holds what the cuda_toolkit / cudnn / nvidia_driver tests rely on, and says it is a fake."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

SPEC = Path(__file__).resolve().parents[1] / "fixtures" / "fake_nvidia_repo" / "packages.yaml"
# Debian policy: a version is [epoch:]upstream[-revision], upstream starting with a digit.
DEB_VERSION = re.compile(r"^(\d+:)?\d[A-Za-z0-9.+~]*(-[A-Za-z0-9.+~]+)?$")


def _packages() -> list[dict[str, object]]:
    return list(yaml.safe_load(SPEC.read_text())["packages"])


def test_every_package_says_it_is_a_fake_and_has_a_debian_version() -> None:
    for pkg in _packages():
        assert "FAKE" in str(pkg["description"]), pkg["name"]
        assert DEB_VERSION.match(str(pkg["version"])), (pkg["name"], pkg["version"])


def test_versions_give_the_roles_a_real_choice() -> None:
    versions: dict[str, set[str]] = {}
    for pkg in _packages():
        versions.setdefault(str(pkg["name"]), set()).add(str(pkg["version"]))
    # A newer build than the stack's must exist, so choosing the stack's minor is observable.
    assert {"9.3.0.75-1", "9.8.0.87-1"} <= versions["cudnn9-cuda-12"]
    # The same cuDNN 8 release for two CUDA majors, and an older 8.9 for CUDA 12.
    assert {"8.9.7.29-1+cuda12.2", "8.9.7.29-1+cuda11.8", "8.9.4.25-1+cuda12.2"} <= versions[
        "libcudnn8"
    ]
    assert len(versions["cuda-toolkit-12-5"]) >= 2
    assert {"cuda-drivers-535", "cuda-drivers-550", "cuda-toolkit-12-2"} <= versions.keys()


def test_the_keyring_package_ships_the_traps_the_role_must_disarm() -> None:
    keyring = next(p for p in _packages() if p["name"] == "cuda-keyring")
    files = keyring["files"]
    assert isinstance(files, dict)
    lists = [v for k, v in files.items() if k.startswith("/etc/apt/sources.list.d/")]
    pins = [v for k, v in files.items() if k.startswith("/etc/apt/preferences.d/")]
    assert lists and all(".invalid/" in v for v in lists)
    assert pins and all("Pin-Priority: 600" in v for v in pins)
