"""The nvidia_driver role's filter plugin: loads, names its filters, delegates to driver_repo."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

PLUGIN = Path(__file__).resolve().parents[2] / "roles/nvidia_driver/filter_plugins/nvidia_driver.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nvidia_driver_filters", PLUGIN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_filters_are_registered() -> None:
    filters = _load().FilterModule().filters()
    assert sorted(filters) == [
        "nvidia_driver_apt_candidate",
        "nvidia_driver_apt_components",
        "nvidia_driver_apt_plan",
        "nvidia_driver_dnf_plan",
        "nvidia_driver_held",
        "nvidia_driver_proc_version",
        "nvidia_driver_upstream",
    ]


def test_apt_plan_filter_passes_keywords_through() -> None:
    policy = (
        "nvidia-driver:\n  Installed: (none)\n  Candidate: 535.261.03-1\n  Version table:\n"
        "     535.261.03-1 500\n        500 http://d bookworm/non-free amd64 Packages\n"
    )
    plan = _load().apt_plan(policy, "^nvidia-driver$", where="Debian", pin="550")
    assert plan["ok"] is False
    assert "R550" in plan["msg"] and "R535: 535.261.03-1" in plan["msg"]


def test_none_inputs_are_empty() -> None:
    module = _load()
    assert module.apt_components(None) == []
    assert module.proc_version(None) is None
    assert module.held(None, "1.0-1") == []
