"""tfgpu_provision.driver_repo: what a repository carries and which driver to install.

The apt-cache policy text below was captured on a bookworm sandbox host (non-free and
bookworm-security enabled), 2026; the per-branch one is written in the same format.
"""

from __future__ import annotations

import pytest

from tfgpu_provision import driver_repo as dr

BOOKWORM_POLICY = """\
nvidia-driver:
  Installed: (none)
  Candidate: 535.309.01-0+deb12u1
  Version table:
     535.309.01-0+deb12u1 500
        500 http://deb.example/debian-security bookworm-security/non-free amd64 Packages
     535.261.03-1 500
        500 http://deb.example/debian bookworm/non-free amd64 Packages
linux-headers-6.18.44-fc-v1147:
  Installed: (none)
  Candidate: (none)
  Version table:
"""

INSTALLED_POLICY = """\
nvidia-driver:
  Installed: 535.309.01-0+deb12u1
  Candidate: 535.309.01-0+deb12u1
  Version table:
 *** 535.309.01-0+deb12u1 500
        500 http://deb.example/debian-security bookworm-security/non-free amd64 Packages
        100 /var/lib/dpkg/status
     535.261.03-1 500
        500 http://deb.example/debian bookworm/non-free amd64 Packages
"""

REPO_POLICY = """\
cuda-drivers-535:
  Installed: (none)
  Candidate: 535.216.03-1
  Version table:
     535.216.03-1 600
        600 http://repo.example/cuda  Packages
     535.183.06-1 600
        600 http://repo.example/cuda  Packages
cuda-drivers-550:
  Installed: (none)
  Candidate: 550.127.08-1
  Version table:
     550.127.08-1 600
        600 http://repo.example/cuda  Packages
cuda-drivers-570:
  Installed: (none)
  Candidate: 570.86.15-1
  Version table:
     570.86.15-1 600
        600 http://repo.example/cuda  Packages
"""


def test_parse_policy_reads_installed_candidate_and_table() -> None:
    policy = dr.parse_apt_policy(INSTALLED_POLICY)
    entry = policy["nvidia-driver"]
    assert entry["installed"] == "535.309.01-0+deb12u1"
    assert entry["candidate"] == "535.309.01-0+deb12u1"
    assert entry["versions"] == ["535.309.01-0+deb12u1", "535.261.03-1"]
    headers = dr.parse_apt_policy(BOOKWORM_POLICY)["linux-headers-6.18.44-fc-v1147"]
    assert headers == {"installed": None, "candidate": None, "versions": []}


@pytest.mark.parametrize(
    ("version", "upstream", "branch"),
    [
        ("535.309.01-0+deb12u1", "535.309.01", "535"),
        ("3:550.54.14-1.el9", "550.54.14", "550"),
        ("570.86.15-0ubuntu0.24.04.1", "570.86.15", "570"),
        ("535.154.05", "535.154.05", "535"),
        (None, None, None),
    ],
)
def test_upstream_and_branch(version: str | None, upstream: str | None, branch: str) -> None:
    assert dr.upstream_version(version) == upstream
    assert dr.branch_of(version) == branch


def test_version_key_orders_numerically() -> None:
    assert dr.version_key("535.309.01-1") > dr.version_key("535.261.03-1")
    assert dr.version_key("535.54.03") < dr.version_key("535.261.03")


def test_debian_candidate_is_chosen_and_reported_with_what_is_carried() -> None:
    plan = dr.plan(
        BOOKWORM_POLICY,
        "^nvidia-driver$",
        where="the Debian 12 repositories",
        minimum="525.60.13",
        preferred="580",
        single_package=True,
    )
    assert plan["ok"], plan["msg"]
    assert plan["version"] == "535.309.01-0+deb12u1"
    assert plan["branch"] == "535"
    assert plan["upstream"] == "535.309.01"
    assert plan["carried"] == {"535": ["535.309.01-0+deb12u1", "535.261.03-1"]}
    assert plan["change"] is True
    assert plan["installed"] is None


def test_pin_that_is_not_carried_fails_naming_what_is() -> None:
    plan = dr.plan(
        BOOKWORM_POLICY, "^nvidia-driver$", where="the Debian 12 repositories", pin="999",
        single_package=True,
    )  # fmt: skip
    assert not plan["ok"]
    assert "R999" in plan["msg"]
    assert "R535: 535.309.01-0+deb12u1, 535.261.03-1" in plan["msg"]
    assert plan["version"] is None


def test_pin_that_is_carried_takes_that_branch() -> None:
    plan = dr.plan(REPO_POLICY, r"^cuda-drivers-([0-9]+)$", where="repo", pin="550")
    assert plan["ok"]
    assert (plan["package"], plan["version"]) == ("cuda-drivers-550", "550.127.08-1")


def test_per_branch_repo_prefers_the_stack_branch_else_the_lowest_fitting() -> None:
    preferred = dr.plan(REPO_POLICY, r"^cuda-drivers-([0-9]+)$", where="r", preferred="570")
    assert preferred["branch"] == "570"
    fallback = dr.plan(
        REPO_POLICY, r"^cuda-drivers-([0-9]+)$", where="r", preferred="580", minimum="545.23.06"
    )
    assert fallback["ok"]
    assert fallback["branch"] == "550"


def test_carried_driver_below_the_minimum_fails() -> None:
    plan = dr.plan(
        BOOKWORM_POLICY, "^nvidia-driver$", where="Debian", minimum="545.23.06",
        single_package=True,
    )  # fmt: skip
    assert not plan["ok"]
    assert "older than 545.23.06" in plan["msg"]


def test_installed_newer_driver_is_never_downgraded() -> None:
    plan = dr.plan(
        REPO_POLICY, r"^cuda-drivers-([0-9]+)$", where="r", pin="535", installed="550.127.08-1"
    )
    assert not plan["ok"]
    assert "never downgraded" in plan["msg"]


def test_installed_version_from_policy_means_no_change() -> None:
    plan = dr.plan(INSTALLED_POLICY, "^nvidia-driver$", where="Debian", single_package=True)
    assert plan["ok"]
    assert plan["installed"] == "535.309.01-0+deb12u1"
    assert plan["change"] is False


def test_empty_repository_says_nothing_is_offered() -> None:
    plan = dr.plan("", "^nvidia-driver$", where="Debian", single_package=True)
    assert not plan["ok"]
    assert "offers no NVIDIA driver package" in plan["msg"]


def test_apt_candidate() -> None:
    assert dr.apt_candidate(BOOKWORM_POLICY, "nvidia-driver") == "535.309.01-0+deb12u1"
    assert dr.apt_candidate(BOOKWORM_POLICY, "linux-headers-6.18.44-fc-v1147") is None
    assert dr.apt_candidate(BOOKWORM_POLICY, "absent") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.154.05  Thu Dec 28 15:37:48 UTC "
            "2023\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n",
            "535.154.05",
        ),
        (
            "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.14  Release Build  "
            "(dvs-builder@U16-I3-B03-4-3)  Thu Feb 22 01:25:25 UTC 2024\n",
            "550.54.14",
        ),
        ("", None),
        (None, None),
        ("garbage\n", None),
    ],
)
def test_proc_driver_version(text: str | None, expected: str | None) -> None:
    assert dr.proc_driver_version(text) == expected


def test_apt_components_reads_deb822_and_one_line_sources() -> None:
    files = {
        "/etc/apt/sources.list.d/debian.sources": (
            "# comment\nTypes: deb\nURIs: http://deb.example/debian\nSuites: bookworm\n"
            "Components: main contrib\n non-free\n\n"
            "Types: deb-src\nURIs: http://deb.example/debian\nSuites: bookworm\n"
            "Components: main non-free-firmware\n\n"
            "Enabled: no\nTypes: deb\nURIs: http://x\nSuites: y\nComponents: restricted\n"
        ),
        "/etc/apt/sources.list": (
            "deb [arch=amd64 signed-by=/k.gpg] http://deb.example/debian bookworm main universe\n"
            "# deb http://deb.example/debian bookworm multiverse\n"
        ),
    }
    found = dr.apt_components(files)
    assert found == ["main", "contrib", "non-free", "universe"]
    assert "non-free-firmware" not in found  # deb-src only
    assert "restricted" not in found  # disabled stanza
    assert "multiverse" not in found  # commented out


def test_apt_components_without_non_free() -> None:
    files = {"/etc/apt/sources.list": "deb http://d/debian bookworm main non-free-firmware\n"}
    assert "non-free" not in dr.apt_components(files)


DPKG = """\
nvidia-driver 535.309.01-0+deb12u1 installed
libcuda1:amd64 535.309.01-0+deb12u1 installed
nvidia-kernel-dkms 535.309.01-0+deb12u1 installed
nvidia-persistenced 535.171.04-1 installed
glx-alternative-nvidia 1.2.2 installed
nvidia-smi 535.309.01-0+deb12u1 installed
libfoo 535.309.01-0+deb12u1 config-files
cuda-drivers-535 535.309.01-1 installed
dkms 3.0.10-8+deb12u1 installed
"""


def test_held_candidates_are_the_driver_packages() -> None:
    held = dr.held_candidates(DPKG, "535.309.01-0+deb12u1", always=["nvidia-driver", "absent"])
    assert held == [
        "cuda-drivers-535",
        "libcuda1",
        "nvidia-driver",
        "nvidia-kernel-dkms",
        "nvidia-smi",
    ]


def test_dnf_module_streams() -> None:
    text = (
        "Name           Stream        Profiles  Summary\n"
        "nvidia-driver  latest-dkms   default   Nvidia driver\n"
        "nvidia-driver  535-dkms      default   Nvidia driver\n"
        "nvidia-driver  550-dkms      default   Nvidia driver\n"
        "nvidia-driver  open-dkms     default   Nvidia driver\n"
    )
    plan = dr.dnf_module_plan(text, where="repo", preferred="580", minimum="525.60.13")
    assert plan["ok"]
    assert plan["package"] == "nvidia-driver:535-dkms"
    bad = dr.dnf_module_plan(text, where="repo", pin="999")
    assert not bad["ok"]
    assert "R535: 535; R550: 550" in bad["msg"]
