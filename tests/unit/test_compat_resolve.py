"""resolve() and parse_request(): what a user sees for each kind of host and request."""

from __future__ import annotations

import copy
from importlib import resources
from typing import Any

import pytest
import yaml

from tfgpu_provision.compat import Resolution, load_matrix, parse_request, resolve
from tfgpu_provision.compat.matrix import parse_matrix
from tfgpu_provision.errors import BadInput

MATRIX = load_matrix()


def host(
    *,
    cc: str | None = "8.0",
    driver: str | None = "580.65.06",
    python: str = "3.11.2",
    distribution: str = "Ubuntu",
    arch: str = "x86_64",
    gpus: list[dict[str, Any]] | None = None,
    loaded: bool = True,
) -> dict[str, Any]:
    """A well-formed host_facts dict; by default one A100 with a recent driver."""
    if gpus is None:
        gpus = [
            {"index": 0, "name": "NVIDIA A100", "pci_id": "10de:20b2", "compute_capability": cc}
        ]
    return {
        "os": {"family": "Debian", "distribution": distribution, "version": "24.04", "arch": arch},
        "python": python,
        "gpus": gpus,
        "gpu_count": len(gpus),
        "driver": {"version": driver, "cuda_version": None, "loaded": loaded},
    }


def codes(res: Resolution) -> tuple[set[str], set[str]]:
    return {w.code for w in res.warnings}, {e.code for e in res.errors}


def only_warning(res: Resolution, code: str) -> str:
    matching = [w for w in res.warnings if w.code == code]
    assert len(matching) == 1, res.to_dict()
    return matching[0].message


def only_error(res: Resolution, code: str) -> str:
    matching = [e for e in res.errors if e.code == code]
    assert len(matching) == 1, res.to_dict()
    return matching[0].message


# --------------------------------------------------------------------------- every data row


@pytest.mark.parametrize("series", MATRIX.series_names)
def test_each_series_resolves_to_exactly_the_data(series: str) -> None:
    data = MATRIX.tensorflow[series]
    res = resolve(series, host(), {})
    assert res.ok, res.to_dict()
    stack = res.stack
    assert stack is not None
    assert stack.tf_series == series
    assert stack.tensorflow == data.default_release.version.value
    assert stack.cuda == data.cuda.value
    assert stack.cudnn == data.cudnn.value
    assert (stack.python.min, stack.python.max) == (data.python_min.value, data.python_max.value)
    assert stack.python.selected == data.python_max.value  # conda env: newest supported
    assert stack.driver.minimum == MATRIX.cuda_major_of(data).min_driver.value
    assert stack.driver.toolkit == MATRIX.toolkit_driver_of(data).ga.value
    assert stack.driver.action == "keep"
    assert stack.data_sources["cuda"] == "S1"
    expected_name = "tensorflow[and-cuda]" if data.and_cuda_extra.value else "tensorflow"
    assert stack.pip_requirement == f"{expected_name}=={stack.tensorflow}"


@pytest.mark.parametrize("series", MATRIX.series_names)
def test_each_series_picks_a_driver_branch_at_least_the_toolkit_driver(series: str) -> None:
    res = resolve(series, host(driver=None), {"driver_source": "nvidia_repo"})
    assert res.ok and res.stack is not None
    assert res.stack.driver.action == "install"
    assert res.stack.driver.branch is not None
    assert int(res.stack.driver.branch) >= int(res.stack.driver.toolkit.split(".")[0])
    assert "DRIVER_BELOW_TOOLKIT" not in codes(res)[0]


def test_2_21_stack_in_full() -> None:
    res = resolve("2.21", host(driver=None), {})
    assert res.ok
    assert res.to_dict()["stack"] == {
        "tensorflow": "2.21.0",
        "tf_series": "2.21",
        "python": {"min": "3.10", "max": "3.13", "selected": "3.13"},
        "cuda": "12.5",
        "cudnn": "9.3",
        "wheel_compute_capabilities": ["sm_60", "sm_70", "sm_80", "sm_89", "compute_90"],
        "driver": {
            "minimum": "525.60.13",
            "toolkit": "555.42.02",
            "toolkit_updates": ["555.42.06"],
            "installed": None,
            "branch": "580",
            "action": "install",
        },
        "sources": {"driver": "nvidia_repo", "cuda": "pip", "cudnn": "pip", "env": "conda"},
        "pip_requirement": "tensorflow[and-cuda]==2.21.0",
        "and_cuda_pins": None,
        "data_sources": {
            "python": "S1",
            "cuda": "S1",
            "cudnn": "S1",
            "driver_minimum": "S10",
            "driver_toolkit": "S10",
            "tensorflow": "S1",
            "wheel_compute_capabilities": "P1",
        },
    }
    assert res.warnings == []


def test_2_15_pins_post1_with_its_and_cuda_pins() -> None:
    res = resolve("2.15", host(), {})
    assert res.stack is not None
    assert res.stack.pip_requirement == "tensorflow[and-cuda]==2.15.0.post1"
    assert res.stack.cuda == "12.2" and res.stack.cudnn == "8.9"
    assert res.stack.and_cuda_pins is not None
    assert res.stack.and_cuda_pins["nvidia-cudnn-cu12"] == "==8.9.4.25"


def test_latest_and_none_mean_the_highest_series() -> None:
    for request in ("latest", None, "LATEST"):
        res = resolve(request, host(), {})
        assert res.stack is not None and res.stack.tf_series == "2.21"


def test_exact_release_is_kept() -> None:
    res = resolve("2.19.0", host(), {})
    assert res.ok and res.stack is not None
    assert res.stack.pip_requirement == "tensorflow[and-cuda]==2.19.0"
    assert res.stack.and_cuda_pins is not None  # S6 pins belong to 2.19.0
    assert codes(res)[0] == {"WHEEL_CC_UNKNOWN"}  # 2.19's wheel list is unconfirmed


def test_debian_defaults_to_the_distro_driver_elsewhere_nvidia_repo() -> None:
    debian = resolve("2.21", host(distribution="Debian"), {})
    ubuntu = resolve("2.21", host(distribution="Ubuntu"), {})
    assert debian.stack is not None and ubuntu.stack is not None
    assert debian.stack.sources.driver == "distro"
    assert ubuntu.stack.sources.driver == "nvidia_repo"


def test_series_without_and_cuda_defaults_to_conda_cuda() -> None:
    res = resolve("2.13", host(), {})
    assert res.stack is not None
    assert res.stack.sources.cuda == "conda" and res.stack.sources.cudnn == "conda"
    assert res.stack.pip_requirement == "tensorflow==2.13.0"


# --------------------------------------------------------------------------- parse_request


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2.21", "2.21"),
        ("2.21.0", "2.21.0"),
        (" 2.20 ", "2.20"),
        ("latest", "2.21"),
        (None, "2.21"),
    ],
)
def test_parse_request_accepts(value: object, expected: str) -> None:
    assert parse_request(value) == expected


def test_parse_request_yaml_float_names_the_lost_zero() -> None:
    with pytest.raises(BadInput) as info:
        parse_request(2.2)
    assert info.value.exit_code == 2
    assert "probably 2.20" in info.value.message
    assert info.value.fix is not None and "'2.20'" in info.value.fix


def test_parse_request_string_2_2_is_unknown_with_the_same_hint() -> None:
    with pytest.raises(BadInput) as info:
        parse_request("2.2")
    assert getattr(info.value, "code", None) == "UNKNOWN_RELEASE"
    assert "probably 2.20" in info.value.message
    assert info.value.fix is not None and "'2.20'" in info.value.fix


def test_parse_request_unknown_release_lists_the_known_ones() -> None:
    with pytest.raises(BadInput) as info:
        parse_request("2.99")
    assert getattr(info.value, "code", None) == "UNKNOWN_RELEASE"
    assert ", ".join(MATRIX.series_names) in info.value.message
    assert "probably" not in info.value.message  # no trailing-zero hint for 2.99


@pytest.mark.parametrize("value", ["tensorflow-gpu", "tensorflow-gpu==2.10", "tensorflow_gpu"])
def test_parse_request_tensorflow_gpu_is_removed(value: str) -> None:
    with pytest.raises(BadInput) as info:
        parse_request(value)
    assert getattr(info.value, "code", None) == "TENSORFLOW_GPU_REMOVED"
    assert "tensorflow-gpu" in info.value.message and "2.21" in (info.value.fix or "")


@pytest.mark.parametrize("value", ["banana", "", "2", "2.21.x", 2, True, ["2.21"], {"v": 1}])
def test_parse_request_rejects_garbage(value: object) -> None:
    with pytest.raises(BadInput) as info:
        parse_request(value)
    assert getattr(info.value, "code", None) == "BAD_REQUEST"


def test_resolve_turns_request_problems_into_errors_without_a_stack() -> None:
    for request, code in [
        (2.2, "RELEASE_AS_NUMBER"),
        ("2.99", "UNKNOWN_RELEASE"),
        ("tensorflow-gpu", "TENSORFLOW_GPU_REMOVED"),
        (object(), "BAD_REQUEST"),
    ]:
        res = resolve(request, host(), {})
        assert res.stack is None and not res.ok
        assert [e.code for e in res.errors] == [code]


# --------------------------------------------------------------------------- releases


def test_unknown_patch_release_warns() -> None:
    res = resolve("2.21.7", host(), {})
    assert res.ok and res.stack is not None
    assert res.stack.tensorflow == "2.21.7"
    assert "2.21.0" in only_warning(res, "RELEASE_NOT_IN_DATA")


def test_superseded_release_warns_and_names_the_replacement() -> None:
    res = resolve("2.15.0", host(), {})
    assert "2.15.0.post1" in only_warning(res, "RELEASE_SUPERSEDED")


# --------------------------------------------------------------------------- python


def test_conda_python_pin_outside_range_is_an_error() -> None:
    res = resolve("2.21", host(), {"python": "3.9"})
    assert "3.10 to 3.13" in only_error(res, "PYTHON_OUT_OF_RANGE")


def test_conda_python_pin_inside_range_is_used() -> None:
    res = resolve("2.21", host(), {"python": "3.11"})
    assert res.ok and res.stack is not None and res.stack.python.selected == "3.11"


def test_venv_with_host_python_outside_range_is_an_error_pointing_at_conda() -> None:
    res = resolve("2.21", host(python="3.9.2"), {"env_manager": "venv"})
    only_error(res, "VENV_PYTHON_OUT_OF_RANGE")
    assert "env_manager: conda" in res.errors[0].fix


def test_venv_uses_the_host_python() -> None:
    res = resolve("2.21", host(python="3.12.3"), {"env_manager": "venv"})
    assert res.ok and res.stack is not None and res.stack.python.selected == "3.12"


def test_venv_with_unknown_host_python_warns() -> None:
    facts = host()
    del facts["python"]
    res = resolve("2.21", facts, {"env_manager": "venv"})
    assert res.ok
    only_warning(res, "PYTHON_UNKNOWN")


def test_python_pin_as_yaml_float_is_invalid() -> None:
    res = resolve("2.21", host(), {"python": 3.1})
    assert "3.1" in only_error(res, "PIN_INVALID")


# --------------------------------------------------------------------------- sources


def test_invalid_source_pin_is_an_error() -> None:
    res = resolve("2.21", host(), {"cuda_source": "apt"})
    assert "cuda_source" in only_error(res, "PIN_INVALID")


def test_conda_cuda_in_a_venv_conflicts() -> None:
    res = resolve("2.21", host(), {"env_manager": "venv", "cuda_source": "conda"})
    assert {e.code for e in res.errors} == {"SOURCE_CONFLICT"}


def test_pip_cuda_for_a_series_without_and_cuda_is_an_error() -> None:
    res = resolve("2.12", host(), {"cuda_source": "pip"})
    only_error(res, "AND_CUDA_UNAVAILABLE")


def test_distro_cuda_warns_that_its_version_is_unchecked() -> None:
    res = resolve("2.21", host(), {"cuda_source": "distro"})
    assert res.ok
    assert "12.5" in only_warning(res, "DISTRO_CUDA_UNCHECKED")
    assert res.stack is not None and res.stack.pip_requirement == "tensorflow==2.21.0"


def test_unmanaged_cuda_warns() -> None:
    res = resolve("2.21", host(), {"cuda_source": "none"})
    assert res.stack is not None and res.stack.sources.cudnn == "none"
    assert "CUDA and cuDNN" in only_warning(res, "CUDA_LIBS_NOT_MANAGED")


@pytest.mark.parametrize("arch", ["aarch64", "arm64"])
def test_aarch64_has_no_cuda_wheels(arch: str) -> None:
    res = resolve("2.21", host(arch=arch), {})
    assert arch in only_error(res, "AARCH64_NO_CUDA_WHEELS")
    assert resolve("2.21", host(arch=arch), {"cuda_source": "none"}).ok


# --------------------------------------------------------------------------- GPUs


@pytest.mark.parametrize("cc", ["6.0", "6.1", "7.0", "7.5", "8.0", "8.6", "8.9"])
def test_gpus_with_native_code_in_the_2_21_wheel_are_clean(cc: str) -> None:
    res = resolve("2.21", host(cc=cc), {})
    assert res.ok and res.warnings == [], res.to_dict()


def test_hopper_on_2_21_only_gets_ptx_jit() -> None:
    res = resolve("2.21", host(cc="9.0"), {})
    assert res.ok
    assert "compute_90" in only_warning(res, "CC_PTX_JIT")


def test_blackwell_on_cuda_12_5_is_newer_than_cuda() -> None:
    res = resolve("2.21", host(cc="12.0"), {})
    assert res.ok
    only_warning(res, "CC_NEWER_THAN_CUDA")
    assert "CC_PTX_JIT" not in codes(res)[0]


def test_maxwell_on_2_21_is_not_in_the_wheel() -> None:
    res = resolve("2.21", host(cc="5.2"), {})
    only_error(res, "CC_NOT_IN_WHEEL")
    assert "6.0" in res.errors[0].fix


def test_kepler_is_dropped_by_cuda_12_and_the_fix_names_a_cuda_11_release() -> None:
    res = resolve("2.21", host(cc="3.7"), {})
    assert [e.code for e in res.errors] == ["CC_DROPPED_BY_CUDA"]
    assert "TensorFlow 2.14" in res.errors[0].fix


def test_kepler_on_cuda_11_gets_its_last_branch_with_warnings() -> None:
    res = resolve("2.14", host(cc="3.7", driver=None), {})
    assert res.ok and res.stack is not None
    assert res.stack.driver.branch == "470"
    warnings = codes(res)[0]
    assert {"DRIVER_BELOW_TOOLKIT", "DRIVER_BRANCH_UNSUPPORTED", "WHEEL_CC_UNKNOWN"} <= warnings


def test_unrecognized_compute_capability_warns() -> None:
    res = resolve("2.21", host(cc="8.8"), {})
    assert res.ok
    only_warning(res, "GPU_CC_UNRECOGNIZED")


def test_unknown_compute_capability_warns() -> None:
    res = resolve("2.21", host(cc=None), {})
    assert res.ok
    only_warning(res, "GPU_CC_UNKNOWN")


def test_unconfirmed_wheel_caps_warn_once_for_all_gpus() -> None:
    gpus = [{"index": i, "compute_capability": "8.0"} for i in range(4)]
    res = resolve("2.20", host(gpus=gpus), {})
    assert res.ok
    assert "GPU 3 at 8.0" in only_warning(res, "WHEEL_CC_UNKNOWN")


def test_no_gpu_is_a_warning_that_says_what_would_be_installed() -> None:
    res = resolve("2.21", host(gpus=[], driver=None), {})
    assert res.ok
    message = only_warning(res, "NO_GPU")
    assert "R580" in message and "CUDA 12.5" in message and "TensorFlow 2.21.0" in message


# --------------------------------------------------------------------------- driver


def test_driver_below_minimum_with_unmanaged_driver_is_an_error() -> None:
    res = resolve("2.21", host(driver="470.256.02"), {"driver_source": "none"})
    assert "525.60.13" in only_error(res, "DRIVER_BELOW_MINIMUM")


def test_driver_below_minimum_with_managed_driver_is_the_upgrade_plan() -> None:
    res = resolve("2.21", host(driver="470.256.02"), {"driver_source": "nvidia_repo"})
    assert res.ok and res.stack is not None
    assert (res.stack.driver.action, res.stack.driver.branch) == ("upgrade", "580")
    assert res.stack.driver.installed == "470.256.02"


def test_driver_between_minimum_and_toolkit_is_kept_with_a_warning() -> None:
    res = resolve("2.21", host(driver="535.54.03"), {})
    assert res.ok and res.stack is not None
    assert (res.stack.driver.action, res.stack.driver.branch) == ("keep", "535")
    message = only_warning(res, "DRIVER_BELOW_TOOLKIT")
    assert "555.42.02" in message and "555.42.06" in message
    assert "580" in res.warnings[0].fix


def test_unmanaged_driver_below_toolkit_only_warns() -> None:
    res = resolve("2.21", host(driver="535.54.03"), {"driver_source": "none"})
    assert res.ok
    only_warning(res, "DRIVER_BELOW_TOOLKIT")


def test_pinned_branch_below_cuda_minimum_is_too_old() -> None:
    res = resolve("2.21", host(driver=None), {"driver_branch": "470"})
    assert "R470" in only_error(res, "DRIVER_BRANCH_TOO_OLD")


def test_pinned_branch_between_minimum_and_toolkit_warns() -> None:
    res = resolve("2.21", host(driver=None), {"driver_branch": 535})
    assert res.ok and res.stack is not None
    assert res.stack.driver.branch == "535"
    only_warning(res, "DRIVER_BELOW_TOOLKIT")


def test_pinned_branch_above_the_gpus_last_branch_drops_the_gpu() -> None:
    res = resolve("2.21", host(cc="6.1", driver=None), {"driver_branch": "R595"})
    assert "R580" in only_error(res, "DRIVER_BRANCH_DROPS_GPU")


def test_pinned_end_of_life_branch_warns() -> None:
    res = resolve("2.21", host(driver=None), {"driver_branch": "560"})
    assert res.ok
    only_warning(res, "DRIVER_BRANCH_UNSUPPORTED")


def test_pinned_branch_upgrades_an_older_driver_and_never_downgrades() -> None:
    up = resolve("2.21", host(driver="550.54.14"), {"driver_branch": "580"})
    assert up.stack is not None and up.stack.driver.action == "upgrade"
    down = resolve("2.21", host(driver="595.45.04"), {"driver_branch": "580"})
    assert down.stack is not None and down.stack.driver.action == "keep"
    assert down.stack.driver.branch == "595"
    only_warning(down, "DRIVER_NEWER_THAN_PIN")


def test_invalid_driver_branch_pin() -> None:
    res = resolve("2.21", host(), {"driver_branch": "latest"})
    only_error(res, "PIN_INVALID")


def test_driver_branch_pin_is_ignored_when_the_driver_is_unmanaged() -> None:
    res = resolve("2.21", host(), {"driver_branch": "580", "driver_source": "none"})
    assert res.ok
    only_warning(res, "PIN_IGNORED")


def test_missing_driver_with_unmanaged_source_is_an_error() -> None:
    res = resolve("2.21", host(driver=None), {"driver_source": "none"})
    only_error(res, "DRIVER_MISSING")
    assert res.stack is not None and res.stack.driver.action == "none"


def test_unknown_driver_with_unmanaged_source_warns() -> None:
    facts = host()
    del facts["driver"]
    res = resolve("2.21", facts, {"driver_source": "none"})
    assert res.ok
    only_warning(res, "DRIVER_UNKNOWN")


def test_driver_not_loaded_warns() -> None:
    res = resolve("2.21", host(loaded=False), {})
    assert res.ok
    only_warning(res, "DRIVER_NOT_LOADED")


def test_no_driver_branch_when_the_data_has_none_that_fits() -> None:
    text = resources.files("tfgpu_provision.compat").joinpath("matrix.yaml").read_text()
    doc = copy.deepcopy(yaml.safe_load(text))
    doc["driver_branches"] = {"470": doc["driver_branches"]["470"]}
    res = resolve("2.21", host(driver=None), {}, matrix=parse_matrix(doc))
    only_error(res, "NO_DRIVER_BRANCH")


def test_findings_are_one_sentence_with_a_fix() -> None:
    res = resolve(
        "2.21", host(cc="5.2", driver="470.1.1", python="3.8.1"), {"driver_source": "none"}
    )
    assert len(res.errors) >= 2
    for finding in [*res.errors, *res.warnings]:
        assert finding.message.endswith(".") and finding.fix.endswith(".")
        assert ". " not in finding.message.rstrip(".").replace("e.g. ", "")
