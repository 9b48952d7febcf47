"""The packaged compatibility data: its facts, its sources, and the loader's strictness."""

from __future__ import annotations

import copy
import dataclasses
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from tfgpu_provision.compat import MatrixDataError, Sourced, load_matrix
from tfgpu_provision.compat.matrix import parse_matrix

MATRIX = load_matrix()


def _packaged_document() -> Any:
    text = resources.files("tfgpu_provision.compat").joinpath("matrix.yaml").read_text()
    return yaml.safe_load(text)


def _sourced_values(node: object, path: str = "matrix") -> list[tuple[str, Sourced[Any]]]:
    """Every Sourced value reachable from the loaded matrix, with where it was found."""
    found: list[tuple[str, Sourced[Any]]] = []
    if isinstance(node, Sourced):
        found.append((path, node))
    elif dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            found += _sourced_values(getattr(node, f.name), f"{path}.{f.name}")
    elif isinstance(node, dict):
        for key, value in node.items():
            found += _sourced_values(value, f"{path}[{key}]")
    elif isinstance(node, tuple | list):
        for i, value in enumerate(node):
            found += _sourced_values(value, f"{path}[{i}]")
    return found


def test_covers_tensorflow_2_12_to_2_21_and_latest_is_the_highest() -> None:
    assert MATRIX.series_names == tuple(f"2.{minor}" for minor in range(12, 22))
    assert MATRIX.latest == "2.21"


def test_every_value_names_a_defined_source() -> None:
    values = _sourced_values(MATRIX)
    assert len(values) > 100  # the walk really reached the data
    undefined = [(path, v.source) for path, v in values if v.source not in MATRIX.sources]
    assert undefined == []


# Expected values re-read from reference/compat.md (S1 table, S10 Table 3).
@pytest.mark.parametrize(
    ("series", "python", "cuda", "cudnn"),
    [
        ("2.12", ("3.8", "3.11"), "11.8", "8.6"),
        ("2.13", ("3.8", "3.11"), "11.8", "8.6"),
        ("2.14", ("3.9", "3.11"), "11.8", "8.7"),
        ("2.15", ("3.9", "3.11"), "12.2", "8.9"),
        ("2.16", ("3.9", "3.12"), "12.3", "8.9"),
        ("2.17", ("3.9", "3.12"), "12.3", "8.9"),
        ("2.18", ("3.9", "3.12"), "12.5", "9.3"),
        ("2.19", ("3.9", "3.12"), "12.5", "9.3"),
        ("2.20", ("3.9", "3.13"), "12.5", "9.3"),
        ("2.21", ("3.10", "3.13"), "12.5", "9.3"),
    ],
)
def test_series_values_match_the_tested_build_configurations(
    series: str, python: tuple[str, str], cuda: str, cudnn: str
) -> None:
    s = MATRIX.tensorflow[series]
    assert (s.python_min.value, s.python_max.value) == python
    assert s.cuda == Sourced(cuda, "S1")
    assert s.cudnn == Sourced(cudnn, "S1")


def test_2_21_driver_floor_and_toolkit_driver() -> None:
    s = MATRIX.tensorflow["2.21"]
    assert MATRIX.cuda_major_of(s).min_driver == Sourced("525.60.13", "S10")
    toolkit = MATRIX.toolkit_driver_of(s)
    assert toolkit.ga == Sourced("555.42.02", "S10")
    assert toolkit.updates.value == ("555.42.06",)
    assert s.wheel_compute_capabilities == Sourced(
        ("sm_60", "sm_70", "sm_80", "sm_89", "compute_90"), "P1"
    )


def test_cuda_11_driver_floor() -> None:
    assert MATRIX.cuda_major_of(MATRIX.tensorflow["2.14"]).min_driver.value == "450.80.02"
    assert MATRIX.toolkit_driver_of(MATRIX.tensorflow["2.14"]).ga.value == "520.61.05"


def test_2_15_installs_post1_because_2_15_0_was_superseded() -> None:
    s = MATRIX.tensorflow["2.15"]
    assert s.default_release.version == Sourced("2.15.0.post1", "S5")
    old = s.release("2.15.0")
    assert old is not None and old.superseded_by is not None
    assert old.superseded_by.value == "2.15.0.post1"
    pins = s.pins_for("2.15.0.post1")
    assert pins is not None and pins.pins.source == "S5"
    assert pins.pins.value["nvidia-cudnn-cu12"] == "==8.9.4.25"
    assert "tensorrt" not in pins.pins.value


def test_and_cuda_extra_starts_at_2_14() -> None:
    with_extra = [n for n, s in MATRIX.tensorflow.items() if s.and_cuda_extra.value]
    assert with_extra == [f"2.{minor}" for minor in range(14, 22)]


def test_unconfirmed_values_are_absent() -> None:
    # compat.md marks these UNCONFIRMED: they must not appear as data.
    for series in ("2.12", "2.13", "2.14", "2.15", "2.16", "2.17", "2.19", "2.20"):
        assert MATRIX.tensorflow[series].wheel_compute_capabilities is None, series
    for series in ("2.17", "2.20", "2.21"):
        assert MATRIX.tensorflow[series].and_cuda_pins == (), series
    assert MATRIX.driver_branches["580"].eol is None  # S13's pages disagree
    assert MATRIX.driver_branches["470"].designation is None
    assert "13.3" not in MATRIX.toolkit_drivers


def test_cuda_12_dropped_kepler_and_blackwell_needs_12_8() -> None:
    cm = MATRIX.cuda_majors["12"]
    assert "3.7" in cm.dropped_cc.value
    assert cm.cc_since.value["12.0"] == "12.8"


def test_branch_currency_is_judged_at_the_data_date() -> None:
    as_of = MATRIX.as_of.value
    current = [b for b, info in MATRIX.driver_branches.items() if info.is_current(as_of)]
    # R570's production support ended 2026-02, before the data's date.
    assert current == ["535", "580", "595", "620"]


# --------------------------------------------------------------------------- loader


def _write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_loader_accepts_a_copy_of_the_packaged_file(tmp_path: Path) -> None:
    assert load_matrix(_write(tmp_path, _packaged_document())) == MATRIX


def test_loader_rejects_a_value_without_source(tmp_path: Path) -> None:
    doc = _packaged_document()
    doc["tensorflow"]["2.21"]["cuda"] = "12.5"
    with pytest.raises(MatrixDataError, match=r"tensorflow\.2\.21\.cuda: value has no source"):
        load_matrix(_write(tmp_path, doc))


def test_loader_rejects_a_value_mapping_missing_its_source(tmp_path: Path) -> None:
    doc = _packaged_document()
    doc["tensorflow"]["2.18"]["cudnn"] = {"value": "9.3"}
    with pytest.raises(MatrixDataError, match="has no source"):
        load_matrix(_write(tmp_path, doc))


def test_loader_rejects_a_row_without_source(tmp_path: Path) -> None:
    doc = _packaged_document()
    del doc["cuda_toolkit_drivers"]["12.5"]["source"]
    with pytest.raises(MatrixDataError, match=r"cuda_toolkit_drivers\.12\.5\.ga"):
        load_matrix(_write(tmp_path, doc))


def test_loader_rejects_an_undefined_source_id(tmp_path: Path) -> None:
    doc = _packaged_document()
    doc["tensorflow"]["2.21"]["cuda"]["source"] = "S99"
    with pytest.raises(MatrixDataError, match="'S99' is not defined"):
        load_matrix(_write(tmp_path, doc))


def test_loader_rejects_an_unquoted_version(tmp_path: Path) -> None:
    doc = _packaged_document()
    doc["tensorflow"]["2.21"]["python"]["value"] = [3.1, "3.13"]
    with pytest.raises(MatrixDataError, match="expected quoted text"):
        load_matrix(_write(tmp_path, doc))


def test_loader_rejects_unknown_keys(tmp_path: Path) -> None:
    doc = _packaged_document()
    doc["tensorflow"]["2.21"]["cudnn_version"] = {"value": "9.3", "source": "S1"}
    with pytest.raises(MatrixDataError, match="unknown keys"):
        load_matrix(_write(tmp_path, doc))


def test_loader_rejects_a_series_whose_cuda_has_no_driver_data() -> None:
    doc = copy.deepcopy(_packaged_document())
    del doc["cuda_toolkit_drivers"]["12.5"]
    with pytest.raises(MatrixDataError, match=r"CUDA 12\.5 has no toolkit driver"):
        parse_matrix(doc)


def test_loader_rejects_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "matrix.yaml"
    path.write_text("tensorflow: [unclosed\n")
    with pytest.raises(MatrixDataError, match="not valid YAML"):
        load_matrix(path)
