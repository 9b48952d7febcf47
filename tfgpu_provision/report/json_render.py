"""The JSON report, validated against ``data/report.schema.json`` before it is written."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from tfgpu_provision.report.model import RunReport

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "data" / "report.schema.json"


@cache
def schema() -> dict[str, Any]:
    text = SCHEMA_PATH.read_text(encoding="utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


def validate(doc: object) -> None:
    """Raise ``jsonschema.ValidationError`` when ``doc`` does not match the report schema."""
    import jsonschema  # type: ignore[import-untyped]

    jsonschema.Draft202012Validator(schema()).validate(doc)


def render(report: RunReport) -> str:
    doc = report.to_dict()
    validate(doc)
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
