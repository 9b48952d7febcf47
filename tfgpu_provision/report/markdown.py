"""The Markdown report: hosts, per-device results, diagnoses with fixes."""

from __future__ import annotations

from tfgpu_provision.report import fmt
from tfgpu_provision.report.model import PASS, SIMULATED, RunReport


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _row(cells: list[object]) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = [_row(list(header)), "|" + "|".join(" --- " for _ in header) + "|"]
    lines.extend(_row(r) for r in rows)
    return lines


def render(report: RunReport) -> str:
    counts = ", ".join(f"{n} {v}" for v, n in report.counts().items() if n) or "no hosts"
    lines = [
        f"# tfgpu-provision report: {report.run_name}",
        "",
        f"- Run status: {report.status}; finished: {report.finished}; "
        f"exit code: **{report.exit_code}**",
        f"- Hosts: {counts}",
        f"- Generated: {report.generated_at}",
    ]
    if any(h.verdict == SIMULATED for h in report.hosts):
        lines.append(
            "- **Simulated**: hosts marked `simulated` ran the checks on CPU logical devices; "
            "no GPU was tested there."
        )
    for message in report.guard_errors:
        lines.append(f"- Guard error: {message}")
    lines += ["", "## Hosts", ""]
    lines += _table(
        [
            "host",
            "verdict",
            "TensorFlow",
            "build CUDA/cuDNN",
            "devices",
            "matmul ok",
            "all-reduce ok",
            "keras loss falling",
            "TFLOP/s fp32 per device",
        ],
        [
            [
                h.name,
                fmt.verdict_text(h),
                fmt.dash(h.tensorflow),
                fmt.build_text(h),
                fmt.devices_text(h),
                fmt.matmul_text(h),
                fmt.yes_no(h.all_reduce_ok),
                fmt.yes_no(h.keras_loss_falling),
                fmt.tflops_text(h),
            ]
            for h in report.hosts
        ],
    )
    devices = report.all_device_results()
    if devices:
        lines += ["", "## Devices", ""]
        lines += _table(
            ["host", "device", "model", "correct", "max abs error", "TFLOP/s fp32",
             "TFLOP/s bf16", "flag"],
            [
                [
                    d.host,
                    fmt.device_label(d),
                    d.model,
                    fmt.yes_no(d.correct),
                    "-" if d.max_abs_error is None else f"{d.max_abs_error:.2e}",
                    fmt.number(d.tflops_fp32),
                    fmt.number(d.tflops_bf16),
                    f"SLOW: {d.slow_reason}" if d.slow else ("simulated" if d.simulated else ""),
                ]
                for d in devices
            ],
        )  # fmt: skip
    problems = [h for h in report.hosts if h.verdict not in (PASS, SIMULATED)]
    if problems:
        lines += ["", "## Problems and fixes", ""]
        for host in problems:
            lines += [f"### {host.name}: {host.verdict}", "", host.reason, ""]
            for diag in host.diagnoses:
                lines.append(f"- **{diag.id}**: {diag.cause}")
                if diag.fix:
                    lines.append(f"  - Fix: {diag.fix}")
                if diag.evidence:
                    lines.append("  - Log:")
                    lines += [
                        "",
                        "    ```text",
                        *(f"    {e}" for e in diag.evidence),
                        "    ```",
                        "",
                    ]
            lines.append("")
    warned = [h for h in report.hosts if h.warnings]
    if warned:
        lines += ["", "## Warnings", ""]
        for host in warned:
            for w in host.warnings:
                lines.append(f"- {host.name} **{w['code']}**: {w['message']}")
    return "\n".join(lines).rstrip() + "\n"
