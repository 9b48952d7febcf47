"""The report: run model -> terminal table | JSON | JUnit XML | Markdown | HTML.

``load_run(run_dir)`` reads a run directory into a ``RunReport``; ``write_reports(run_dir)``
writes ``report.json``, ``report.xml`` (JUnit), ``report.md`` and ``report.html`` into it.
"""

from __future__ import annotations

from pathlib import Path

from tfgpu_provision.report import html, json_render, junit, markdown
from tfgpu_provision.report.model import (
    CHECKS,
    FAIL,
    NOT_VERIFIED,
    PASS,
    REBOOT_PENDING,
    SIMULATED,
    UNREACHABLE,
    VERDICTS,
    HostReport,
    RunReport,
    load_run,
)

REPORT_FILES = {
    "json": "report.json",
    "junit": "report.xml",
    "markdown": "report.md",
    "html": "report.html",
}

__all__ = [
    "CHECKS",
    "FAIL",
    "NOT_VERIFIED",
    "PASS",
    "REBOOT_PENDING",
    "REPORT_FILES",
    "SIMULATED",
    "UNREACHABLE",
    "VERDICTS",
    "HostReport",
    "RunReport",
    "load_run",
    "render",
    "write_reports",
]


def render(report: RunReport, fmt: str) -> str:
    """One file format as text: json, junit, markdown or html (``table``: plain text)."""
    if fmt == "json":
        return json_render.render(report)
    if fmt == "junit":
        return junit.render(report)
    if fmt == "markdown":
        return markdown.render(report)
    if fmt == "html":
        return html.render(report)
    if fmt == "table":
        from tfgpu_provision.report import terminal

        return terminal.render_text(report)
    raise ValueError(f"unknown report format {fmt!r}")


def write_reports(run_dir: Path | str, report: RunReport | None = None) -> dict[str, Path]:
    """Write every file format into the run directory; return {format: path}."""
    run_dir = Path(run_dir)
    report = report if report is not None else load_run(run_dir)
    paths: dict[str, Path] = {}
    for fmt, name in REPORT_FILES.items():
        path = run_dir / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(render(report, fmt), encoding="utf-8")
        tmp.replace(path)
        paths[fmt] = path
    return paths
