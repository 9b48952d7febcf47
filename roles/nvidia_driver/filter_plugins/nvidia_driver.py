# Filters of the nvidia_driver role: thin wrappers over tfgpu_provision.driver_repo, so the
# choice of driver version (what the repository carries, pins, no downgrade) is written once,
# in tested Python, not in Jinja.
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible.errors import AnsibleFilterError


def _helpers() -> Any:
    try:
        from tfgpu_provision import driver_repo
    except ImportError as exc:
        raise AnsibleFilterError(
            f"The tfgpu_provision package is not importable by this Ansible ({exc}); "
            "run ansible-playbook from the project's virtualenv (make setup)."
        ) from exc
    return driver_repo


def apt_plan(policy_text: str, package_regex: str, **kwargs: Any) -> dict[str, Any]:
    result: dict[str, Any] = _helpers().plan(policy_text or "", package_regex, **kwargs)
    return result


def dnf_plan(module_list: str, **kwargs: Any) -> dict[str, Any]:
    result: dict[str, Any] = _helpers().dnf_module_plan(module_list or "", **kwargs)
    return result


def apt_components(files: dict[str, str]) -> list[str]:
    result: list[str] = _helpers().apt_components(files or {})
    return result


def apt_candidate(policy_text: str, package: str) -> str | None:
    result: str | None = _helpers().apt_candidate(policy_text or "", package)
    return result


def proc_version(text: str | None) -> str | None:
    result: str | None = _helpers().proc_driver_version(text)
    return result


def held(dpkg_query: str, version: str, always: list[str] | None = None) -> list[str]:
    result: list[str] = _helpers().held_candidates(dpkg_query or "", version, always or [])
    return result


def upstream(version: str | None) -> str | None:
    result: str | None = _helpers().upstream_version(version)
    return result


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "nvidia_driver_apt_plan": apt_plan,
            "nvidia_driver_dnf_plan": dnf_plan,
            "nvidia_driver_apt_components": apt_components,
            "nvidia_driver_apt_candidate": apt_candidate,
            "nvidia_driver_proc_version": proc_version,
            "nvidia_driver_held": held,
            "nvidia_driver_upstream": upstream,
        }
