"""`plan`: per host, what is there now and what the run would install, before anything changes.

Renders the preflight summaries that the ``gpu_preflight`` role returned (see
``tfgpu_provision.preflight``) as a table or as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tfgpu_provision.events import HostState, RunModel

PLAN_SCHEMA = "tfgpu-provision/plan/1"


def _get(mapping: object, *keys: str) -> Any:
    value: Any = mapping
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _dash(value: object) -> str:
    return "-" if value in (None, "", []) else str(value)


def layer_rows(summary: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(layer, current, target) rows for one host's preflight summary."""
    host = summary.get("host") or {}
    stack = _get(summary, "resolution", "stack") or {}
    driver = host.get("driver") or {}
    gpus = host.get("gpu_count") or 0
    sim = summary.get("simulated_gpus") or 0

    current_driver = driver.get("version") or {
        "absent": "not installed",
        "not_loaded": "installed, module not loaded",
        "no_devices": "loaded, no devices",
        "version_mismatch": "driver/library mismatch (reboot pending?)",
    }.get(str(driver.get("state")), "unknown")
    target_driver = "-"
    if stack:
        drv = stack.get("driver") or {}
        parts = [f">= {drv['minimum']}" if drv.get("minimum") else ""]
        if drv.get("branch"):
            parts.append(f"branch {drv['branch']}")
        elif (stack.get("sources") or {}).get("driver") == "distro":
            parts.append("the distribution's branch")
        if drv.get("action"):
            parts.append(f"({drv['action']})")
        target_driver = " ".join(p for p in parts if p) or "-"
    python = stack.get("python") if stack else None
    target_python = (
        f"{python.get('selected') or ''} (range {python.get('min')}-{python.get('max')})".strip()
        if isinstance(python, Mapping)
        else _dash(python)
    )
    sources = stack.get("sources") or {} if stack else {}
    gpu_text = f"{gpus} NVIDIA" if gpus else "none"
    if not gpus and sim:
        gpu_text += f" ({sim} simulated on CPU)"
    installed = host.get("installed") or {}
    toolkits = ", ".join(t.get("version", "?") for t in installed.get("cuda_toolkits") or [])
    cuda_now = toolkits or "-"
    if driver.get("cuda_version"):
        cuda_now += f" (driver supports {driver['cuda_version']})"
    cudnn_now = ", ".join(p.get("version", "?") for p in installed.get("cudnn") or []) or "-"
    envs = installed.get("tf_envs") or []
    env_state = envs[-1].get("state", {}) if envs else {}
    tf_now = (
        str(env_state.get("tensorflow") or env_state.get("requirement") or "-") if envs else "-"
    )
    env_now = ", ".join(str(e.get("path")) for e in envs) or "-"
    return [
        ("GPUs", gpu_text, "-"),
        ("driver", str(current_driver), target_driver),
        (
            "CUDA",
            cuda_now,
            f"{_dash(stack.get('cuda'))} via {_dash(sources.get('cuda'))}" if stack else "-",
        ),
        (
            "cuDNN",
            cudnn_now,
            f"{_dash(stack.get('cudnn'))} via {_dash(sources.get('cudnn'))}" if stack else "-",
        ),
        ("Python", _dash(host.get("python")), target_python),
        (
            "TensorFlow",
            tf_now,
            _dash(stack.get("pip_requirement") or stack.get("tensorflow")) if stack else "-",
        ),
        ("env", env_now, _dash(sources.get("env"))),
    ]


def _findings(summary: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    out: list[tuple[str, Mapping[str, Any]]] = []
    resolution = summary.get("resolution") or {}
    for kind, items in (
        ("error", summary.get("failures") or []),
        ("warning", resolution.get("warnings") or []),
        ("note", summary.get("notes") or []),
    ):
        out.extend((kind, item) for item in items if isinstance(item, Mapping))
    return out


def host_renderable(host: HostState) -> RenderableType:
    if host.preflight is None:
        reason = "; ".join(e["message"] for e in host.errors) or "no preflight result"
        return Text(f"{host.name}: {host.status.upper()} - {reason}", style="bold red")
    summary = host.preflight
    table = Table(title=f"{host.name} ({host.status})", title_justify="left")
    table.add_column("layer")
    table.add_column("current")
    table.add_column("target")
    for row in layer_rows(summary):
        table.add_row(*(Text(cell) for cell in row))  # Text: "[and-cuda]" is not markup
    lines: list[RenderableType] = [table]
    styles = {"error": "bold red", "warning": "yellow", "note": "cyan"}
    for kind, item in _findings(summary):
        line = Text(
            f"  {kind} {item.get('code', '')}: {item.get('message', '')}", style=styles[kind]
        )
        lines.append(line)
        if item.get("fix"):
            lines.append(Text(f"    fix: {item['fix']}"))
    return Group(*lines)


def render_table(model: RunModel) -> RenderableType:
    parts: list[RenderableType] = [
        host_renderable(h) for h in sorted(model.hosts.values(), key=lambda h: h.name)
    ]
    if not parts:
        parts.append(Text("No host ran the preflight.", style="bold red"))
    for message in model.guard_errors:
        parts.append(Text(f"guard: {message}", style="bold red"))
    return Group(*parts)


def to_json(model: RunModel) -> str:
    hosts = []
    for host in sorted(model.hosts.values(), key=lambda h: h.name):
        summary = host.preflight or {}
        hosts.append(
            {
                "name": host.name,
                "status": host.status,
                "errors": host.errors,
                "facts": summary.get("host"),
                "resolution": summary.get("resolution"),
                "failures": summary.get("failures", []),
                "notes": summary.get("notes", []),
                "simulated_gpus": summary.get("simulated_gpus", 0),
            }
        )
    doc = {"schema": PLAN_SCHEMA, "exit_code": model.exit_code(), "hosts": hosts}
    return json.dumps(doc, indent=2, sort_keys=True)
