"""What `tfgpu-provision matrix` prints: JSON and the terminal table, each value with its source."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tfgpu_provision.compat import load_matrix
from tfgpu_provision.compat.render import matrix_document, render_json, render_table
from tfgpu_provision.errors import BadInput

MATRIX = load_matrix()


def _values_with_sources(node: object) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if "value" in node:
            found.append(node)
        for value in node.values():
            found += _values_with_sources(value)
    elif isinstance(node, list):
        for item in node:
            found += _values_with_sources(item)
    return found


def test_json_for_2_21_has_each_value_with_its_source() -> None:
    doc = json.loads(render_json(tensorflow="2.21"))
    assert doc["latest"] == "2.21"
    [row] = doc["tensorflow"]
    assert row["tensorflow"] == "2.21"
    assert row["release"] == {"value": "2.21.0", "source": "S1"}
    assert row["cuda"] == {"value": "12.5", "source": "S1"}
    assert row["cudnn"] == {"value": "9.3", "source": "S1"}
    assert row["python"] == {"min": "3.10", "max": "3.13", "source": "S1"}
    assert row["driver"]["minimum"] == {"value": "525.60.13", "source": "S10"}
    assert row["driver"]["toolkit"] == {
        "value": "555.42.02",
        "updates": ["555.42.06"],
        "source": "S10",
    }
    assert row["wheel_compute_capabilities"] == {
        "value": ["sm_60", "sm_70", "sm_80", "sm_89", "compute_90"],
        "source": "P1",
    }
    # Only the sources this output cites are listed, each with a title.
    assert set(doc["sources"]) == {"S1", "S7", "S10", "P1"}
    assert all(info["title"] for info in doc["sources"].values())


def test_json_accepts_an_exact_release_and_latest() -> None:
    assert json.loads(render_json(tensorflow="2.15.0"))["tensorflow"][0]["tensorflow"] == "2.15"
    assert json.loads(render_json(tensorflow="latest"))["tensorflow"][0]["tensorflow"] == "2.21"


def test_full_json_cites_a_defined_source_for_every_value() -> None:
    doc = json.loads(render_json())
    assert [row["tensorflow"] for row in doc["tensorflow"]] == list(MATRIX.series_names)
    values = _values_with_sources(doc)
    assert len(values) > 50
    assert all(v.get("source") in doc["sources"] for v in values), [
        v for v in values if v.get("source") not in doc["sources"]
    ]
    assert doc["driver_branches"]["580"]["current"] is True
    assert doc["driver_branches"]["570"]["current"] is False


def test_json_is_plain_json_dumps_of_the_document() -> None:
    assert render_json(tensorflow="2.21") == json.dumps(
        matrix_document(tensorflow="2.21"), indent=2
    )


@pytest.mark.parametrize("bad", [2.2, "2.99", "tensorflow-gpu"])
def test_bad_tensorflow_option_is_bad_input(bad: object) -> None:
    with pytest.raises(BadInput):
        render_json(tensorflow=bad)


def test_table_shows_versions_with_sources_and_lists_the_sources() -> None:
    out = render_table(tensorflow="2.21")
    assert "2.21.0 [S1]" in out
    assert "3.10-3.13 [S1]" in out
    assert "12.5 [S1]" in out and "9.3 [S1]" in out
    assert "525.60.13 [S10]" in out
    assert "555.42.02" in out and "555.42.06" in out
    assert "sm_60,sm_70,sm_80,sm_89,compute_90" in out
    assert "[P1] (observed)" in out
    assert "\x1b[" not in out  # plain text, safe to write to a file or pipe


def test_full_table_marks_unconfirmed_wheel_lists() -> None:
    out = render_table()
    lines = [line for line in out.splitlines() if line.startswith("│ 2.")]
    assert len(lines) == len(MATRIX.series_names)
    assert "unconfirmed" in next(line for line in lines if line.startswith("│ 2.20"))
