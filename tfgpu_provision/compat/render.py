"""Render the compatibility data for the ``matrix`` command (table or JSON).

Both renderers return a string; the CLI decides where it goes.  Every value is
shown with the id of its source, and the sources cited are listed with it.
"""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tfgpu_provision.compat.matrix import Matrix, Sourced, TfSeries, load_matrix, plain
from tfgpu_provision.compat.versions import parse_request, series_of


def _series_doc(m: Matrix, s: TfSeries) -> dict[str, Any]:
    toolkit = m.toolkit_driver_of(s)
    caps = s.wheel_compute_capabilities
    return {
        "tensorflow": s.series,
        "release": s.default_release.version.to_dict(),
        "releases": [
            {
                **r.version.to_dict(),
                "superseded_by": r.superseded_by.to_dict() if r.superseded_by else None,
            }
            for r in s.releases
        ],
        "python": {
            "min": s.python_min.value,
            "max": s.python_max.value,
            "source": s.python_min.source,
        },
        "cuda": s.cuda.to_dict(),
        "cudnn": s.cudnn.to_dict(),
        "wheel_compute_capabilities": caps.to_dict() if caps is not None else None,
        "and_cuda_extra": s.and_cuda_extra.to_dict(),
        "driver": {
            "minimum": m.cuda_major_of(s).min_driver.to_dict(),
            "toolkit": {
                "value": toolkit.ga.value,
                "updates": plain(toolkit.updates.value),
                "source": toolkit.ga.source,
            },
        },
        "and_cuda_pins": [
            {"release": p.release, "pins": dict(p.pins.value), "source": p.pins.source}
            for p in s.and_cuda_pins
        ],
    }


def _cited(node: object, found: set[str]) -> None:
    """Collect every ``source`` id that appears in a rendered document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "source" and isinstance(value, str):
                found.add(value)
            else:
                _cited(value, found)
    elif isinstance(node, list):
        for item in node:
            _cited(item, found)


def _opt(value: Sourced[Any] | None) -> dict[str, Any] | None:
    return value.to_dict() if value is not None else None


def matrix_document(matrix: Matrix | None = None, tensorflow: object = None) -> dict[str, Any]:
    """The data as plain dicts; with ``tensorflow`` set, only that series.

    ``tensorflow`` goes through :func:`parse_request`, so a bad value raises
    ``BadInput`` exactly as it would for a run.
    """
    m = matrix if matrix is not None else load_matrix()
    doc: dict[str, Any] = {"latest": m.latest, "as_of": m.as_of.to_dict()}
    if tensorflow is not None:
        name = series_of(parse_request(tensorflow, m))
        doc["tensorflow"] = [_series_doc(m, m.tensorflow[name])]
    else:
        doc["tensorflow"] = [_series_doc(m, m.tensorflow[n]) for n in m.series_names]
        doc["cuda_majors"] = {
            major: {
                "min_driver": cm.min_driver.to_dict(),
                "supported_compute_capabilities": cm.supported_cc.to_dict(),
                "compute_capability_since": cm.cc_since.to_dict(),
                "dropped_compute_capabilities": cm.dropped_cc.to_dict(),
            }
            for major, cm in m.cuda_majors.items()
        }
        doc["cuda_toolkit_drivers"] = {
            cuda: {"ga": t.ga.to_dict(), "updates": t.updates.to_dict()}
            for cuda, t in m.toolkit_drivers.items()
        }
        doc["gpu_last_driver_branch"] = [
            {
                "architecture": row.architecture.to_dict(),
                "max_compute_capability": row.max_compute_capability.to_dict(),
                "branch": row.branch.to_dict(),
            }
            for row in m.gpu_last_driver_branch
        ]
        doc["driver_branches"] = {
            name: {
                "designation": _opt(b.designation),
                "eol": _opt(b.eol),
                "end_of_life": _opt(b.end_of_life),
                "ships_with_cuda": _opt(b.ships_with_cuda),
                "current": b.is_current(m.as_of.value),
            }
            for name, b in m.driver_branches.items()
        }
    found: set[str] = set()
    _cited(doc, found)
    ordered = sorted(found & set(m.sources), key=lambda sid: (sid[:1], int(sid[1:] or 0)))
    doc["sources"] = {sid: m.sources[sid].to_dict() for sid in ordered}
    return doc


def render_json(matrix: Matrix | None = None, tensorflow: object = None) -> str:
    return json.dumps(matrix_document(matrix, tensorflow), indent=2)


def _cell(value: str, source: str | None) -> Text:
    text = Text(value)
    if source:
        text.append(f" [{source}]", style="dim")
    return text


def render_table(matrix: Matrix | None = None, tensorflow: object = None, width: int = 160) -> str:
    """A plain-text table of the TensorFlow series, followed by the sources cited."""
    doc = matrix_document(matrix, tensorflow)
    table = Table(title=f"TensorFlow GPU compatibility (latest: {doc['latest']})")
    for column in ("TF", "release", "Python", "CUDA", "cuDNN", "min driver"):
        table.add_column(column, no_wrap=True)
    table.add_column("toolkit driver (updates)")
    table.add_column("wheel compute capabilities")
    for row in doc["tensorflow"]:
        py, drv, caps = row["python"], row["driver"], row["wheel_compute_capabilities"]
        toolkit = drv["toolkit"]["value"]
        if drv["toolkit"]["updates"]:
            toolkit += " (upd. " + ", ".join(drv["toolkit"]["updates"]) + ")"
        table.add_row(
            Text(row["tensorflow"]),
            _cell(row["release"]["value"], row["release"]["source"]),
            _cell(f"{py['min']}-{py['max']}", py["source"]),
            _cell(row["cuda"]["value"], row["cuda"]["source"]),
            _cell(row["cudnn"]["value"], row["cudnn"]["source"]),
            _cell(drv["minimum"]["value"], drv["minimum"]["source"]),
            _cell(toolkit, drv["toolkit"]["source"]),
            _cell(",".join(caps["value"]), caps["source"]) if caps else Text("unconfirmed"),
        )
    buffer = StringIO()
    console = Console(file=buffer, width=width, color_system=None, force_terminal=False)
    console.print(table)
    for sid, info in doc["sources"].items():
        console.print(Text(f"[{sid}] ({info['kind']}) {info['title']}"))
    return buffer.getvalue()
