"""Per-host doctor reports: evidence -> ranked findings -> table or JSON.

The JSON follows the project's report conventions: a ``schema`` id, an ``exit_code`` and one
object per host, sorted by name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tfgpu_provision.doctor import rules, tflog
from tfgpu_provision.doctor.evidence import Evidence
from tfgpu_provision.errors import EXIT_HOST_FAILED, EXIT_OK

DOCTOR_SCHEMA = "tfgpu-provision/doctor/1"


@dataclass
class HostReport:
    """What the doctor concluded for one host."""

    name: str
    findings: list[rules.Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.errors and not self.summary:
            return "no_evidence"
        if any(f.stops for f in self.findings):
            return "no_device"
        if any(f.severity == "error" for f in self.findings):
            return "problems"
        if any(f.severity == "warning" for f in self.findings):
            return "warnings"
        return "healthy"

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.status in ("healthy", "warnings") else EXIT_HOST_FAILED

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "exit_code": self.exit_code,
            "summary": self.summary,
            "findings": [{"rank": i, **f.to_dict()} for i, f in enumerate(self.findings, start=1)],
            "notes": self.notes,
            "errors": self.errors,
        }


def _summary(ev: Evidence) -> dict[str, Any]:
    tf = None
    if ev.tf_ran:
        tf = {
            "version": ev.tf_result.get("version"),
            "gpus": ev.tf_gpu_count,
            "cuda": ev.build_info.get("cuda_version"),
            "cudnn": ev.build_info.get("cudnn_version"),
        }
    return {
        "pci_gpus": ev.gpu_count,
        "nvswitches": ev.nvswitch_count,
        "driver_state": ev.driver_state,
        "driver_version": ev.driver.get("version") or ev.module_version,
        "kernel_module": ev.module_version if ev.nvidia_loaded else None,
        "libcuda": ev.libcuda_version,
        "cuda_probe": ev.cuda_status,
        "cuda_devices": len(ev.cuda_devices),
        "cuda_driver_api": ev.cuda.get("driver_cuda_version"),
        "secure_boot": ev.secure_boot,
        "tensorflow": tf,
        "target": {
            "tensorflow": ev.stack.get("tensorflow"),
            "cuda": ev.stack.get("cuda"),
            "cudnn": ev.stack.get("cudnn"),
            "driver_minimum": (ev.stack.get("driver") or {}).get("minimum"),
        }
        if ev.stack
        else None,
    }


def _notes(ev: Evidence) -> list[str]:
    notes = []
    if ev.tf_skipped:
        notes.append(f"TensorFlow introspection skipped: {ev.tf_skipped}")
    elif ev.tf and not ev.tf_ran:
        error = ev.tf_result.get("import_error") or (
            "timed out" if ev.tf.get("timed_out") else f"exit status {ev.tf.get('rc')}"
        )
        notes.append(f"TensorFlow could not be introspected: {error}")
    log = ev.kernel_log
    if log and not log.get("readable"):
        notes.append(f"kernel log not readable: {log.get('reason') or 'dmesg failed'}")
    cuda_error = ev.cuda.get("error") if ev.cuda else "the CUDA driver probe did not run"
    if cuda_error:
        notes.append(f"CUDA driver probe: {cuda_error}")
    failure = ev.doc.get("preflight_error")
    if failure:
        notes.append(f"preflight reported: {failure}")
    return notes


def examine(ev: Evidence) -> HostReport:
    """Diagnose one host's evidence."""
    findings = rules.diagnose(ev, extra=tflog.findings(ev))
    return HostReport(name=ev.host, findings=findings, notes=_notes(ev), summary=_summary(ev))


def unreachable(name: str, errors: Iterable[str]) -> HostReport:
    messages = list(errors) or ["the doctor collected no evidence from this host"]
    return HostReport(name=name, errors=messages)


def exit_code(reports: Iterable[HostReport]) -> int:
    return max((r.exit_code for r in reports), default=EXIT_HOST_FAILED)


def to_json(reports: list[HostReport], run_dir: str | None = None) -> str:
    hosts = sorted(reports, key=lambda r: r.name)
    doc = {
        "schema": DOCTOR_SCHEMA,
        "exit_code": exit_code(hosts),
        "run_dir": run_dir,
        "hosts": [r.to_dict() for r in hosts],
    }
    return json.dumps(doc, indent=2, sort_keys=True)


_STYLES = {"error": "bold red", "warning": "yellow", "info": "cyan"}
_HEADLINES = {
    "healthy": ("healthy: the driver, CUDA and TensorFlow checks found nothing wrong", "green"),
    "warnings": ("works, with warnings", "yellow"),
    "problems": ("problems found, most likely first", "bold red"),
    "no_device": ("no NVIDIA device: diagnosis stopped", "bold red"),
    "no_evidence": ("no evidence collected", "bold red"),
}


def _summary_line(summary: Mapping[str, Any]) -> str:
    tf = summary.get("tensorflow")
    tf_text = (
        f"TensorFlow {tf.get('version')} sees {tf.get('gpus')} GPU(s)"
        if isinstance(tf, Mapping)
        else "TensorFlow not checked"
    )
    return (
        f"PCI GPUs {summary.get('pci_gpus')}, driver {summary.get('driver_state')}"
        f" {summary.get('driver_version') or ''}".rstrip()
        + f", CUDA probe {summary.get('cuda_probe')} ({summary.get('cuda_devices')} device(s))"
        + f", {tf_text}"
    )


def host_renderable(report: HostReport) -> RenderableType:
    headline, style = _HEADLINES[report.status]
    parts: list[RenderableType] = [Text(f"{report.name}: {headline}", style=style)]
    if report.summary:
        parts.append(Text("  " + _summary_line(report.summary)))
    for message in report.errors:
        parts.append(Text(f"  {message}", style="red"))
    if report.findings:
        table = Table(show_lines=True, expand=True)
        table.add_column("#", justify="right", no_wrap=True)
        table.add_column("finding: evidence", ratio=1)
        table.add_column("cause -> fix", ratio=1)
        for rank, finding in enumerate(report.findings, start=1):
            left = Text(f"{finding.title} [{finding.severity}]", style=_STYLES[finding.severity])
            for line in finding.evidence:
                left.append(f"\n- {line}", style="")
            right = Text(finding.cause)
            right.append("\nFix: ", style="bold")
            right.append(finding.fix)
            table.add_row(str(rank), left, right)
        parts.append(table)
    for note in report.notes:
        parts.append(Text(f"  note: {note}", style="dim"))
    return Group(*parts)


def render_table(reports: list[HostReport]) -> RenderableType:
    parts = [host_renderable(r) for r in sorted(reports, key=lambda r: r.name)]
    if not parts:
        parts.append(Text("No host was examined.", style="bold red"))
    return Group(*parts)
