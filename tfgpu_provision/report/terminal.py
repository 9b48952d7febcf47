"""The terminal report: one rich table row per host, then what to fix on each failing host."""

from __future__ import annotations

import io

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from tfgpu_provision.report import fmt
from tfgpu_provision.report.model import (
    FAIL,
    NOT_VERIFIED,
    PASS,
    REBOOT_PENDING,
    SIMULATED,
    UNREACHABLE,
    RunReport,
)

_STYLES = {
    PASS: "bold green",
    SIMULATED: "bold yellow",
    FAIL: "bold red",
    UNREACHABLE: "bold red",
    REBOOT_PENDING: "bold magenta",
    NOT_VERIFIED: "yellow",
}


def host_table(report: RunReport) -> Table:
    table = Table(title=f"Report: {report.run_name}", title_justify="left")
    for column in (
        "host",
        "verdict",
        "TensorFlow",
        "build CUDA/cuDNN",
        "devices",
        "matmul ok",
        "all-reduce ok",
        "keras loss falling",
        "TFLOP/s fp32 per device",
    ):
        table.add_column(column)
    for host in report.hosts:
        table.add_row(
            Text(host.name),
            Text(fmt.verdict_text(host), style=_STYLES.get(host.verdict, "")),
            Text(fmt.dash(host.tensorflow)),
            Text(fmt.build_text(host)),
            Text(fmt.devices_text(host)),
            Text(fmt.matmul_text(host)),
            Text(fmt.yes_no(host.all_reduce_ok)),
            Text(fmt.yes_no(host.keras_loss_falling)),
            Text(fmt.tflops_text(host)),
        )
    return table


def details(report: RunReport) -> list[RenderableType]:
    """Per failing host: the reason, each diagnosis with its fix and evidence; slow GPUs."""
    out: list[RenderableType] = []
    for host in report.hosts:
        if host.verdict in (PASS, SIMULATED) and not any(d.slow for d in host.device_results):
            continue
        if host.verdict not in (PASS, SIMULATED):
            out.append(Text(f"{host.name}: {host.verdict} - {host.reason}", style="bold"))
            for diag in host.diagnoses:
                out.append(Text(f"  [{diag.id}] {diag.cause}"))
                if diag.fix:
                    out.append(Text(f"    fix: {diag.fix}"))
                for line in diag.evidence[:5]:
                    out.append(Text(f"    log: {line}", style="dim"))
        for device in host.device_results:
            if device.slow:
                out.append(
                    Text(f"{host.name} {fmt.device_label(device)}: SLOW - {device.slow_reason}")
                )
    for message in report.guard_errors:
        out.append(Text(f"guard: {message}", style="bold red"))
    if any(h.verdict == SIMULATED for h in report.hosts):
        out.append(
            Text(
                "simulated: the checks ran on CPU logical devices; no GPU was tested.",
                style="yellow",
            )
        )
    counts = ", ".join(f"{n} {v}" for v, n in report.counts().items() if n)
    out.append(Text(f"{counts or 'no hosts'}; exit code {report.exit_code}"))
    return out


def render(report: RunReport) -> RenderableType:
    return Group(host_table(report), *details(report))


def render_text(report: RunReport, width: int = 160) -> str:
    """The same report as plain text (for files, logs and tests)."""
    buffer = io.StringIO()
    Console(width=width, color_system=None, file=buffer).print(render(report))
    return buffer.getvalue()
