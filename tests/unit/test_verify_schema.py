"""The verify document validates against tfgpu_provision/data/verify.schema.json.

Reuses the check script runs of test_verify_script.py (cached per session), and shows that the
schema rejects the documents it must reject (a simulated device passed off as a GPU).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.unit.test_verify_script import missing_gpus, no_gpu_no_simulation, simulated

SCHEMA_PATH = (
    Path(__file__).resolve().parents[2] / "tfgpu_provision" / "data" / "verify.schema.json"
)


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def errors(validator: Any, doc: dict[str, Any]) -> list[str]:
    return [e.message for e in validator.iter_errors(doc)]


@pytest.mark.parametrize("run", [simulated, missing_gpus, no_gpu_no_simulation])
def test_script_output_validates(validator: Any, run: Any) -> None:
    _, doc, written = run()
    assert errors(validator, doc) == []
    assert errors(validator, written) == []


def test_simulated_device_cannot_claim_to_be_real(validator: Any) -> None:
    _, doc, _ = simulated()
    forged = copy.deepcopy(doc)
    forged["devices"][1]["simulated"] = False
    assert errors(validator, forged)
    forged = copy.deepcopy(doc)
    forged["stages"][2]["simulated"] = False
    assert errors(validator, forged)


def test_pass_needs_every_stage_passed(validator: Any) -> None:
    _, doc, _ = missing_gpus()
    forged = copy.deepcopy(doc)
    forged["status"] = "pass"
    assert errors(validator, forged)
    forged["failed_stage"] = None
    assert errors(validator, forged)  # the stages still say fail and skip


def test_stage_order_and_schema_id_are_fixed(validator: Any) -> None:
    _, doc, _ = simulated()
    forged = copy.deepcopy(doc)
    forged["stages"][0], forged["stages"][1] = forged["stages"][1], forged["stages"][0]
    assert errors(validator, forged)
    forged = copy.deepcopy(doc)
    forged["schema"] = "tfgpu-provision/verify/2"
    assert errors(validator, forged)
