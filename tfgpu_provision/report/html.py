"""A single-file HTML page: inline CSS and an inline SVG chart, no external assets.

Per-host table, per-check matrix, per-GPU table and a per-GPU TFLOP/s bar chart; a GPU far
below its same-model peers is flagged; simulated results are labelled everywhere they appear.
"""

from __future__ import annotations

from html import escape

from tfgpu_provision.report import fmt
from tfgpu_provision.report.model import (
    PASS,
    SIMULATED,
    SLOW_FRACTION,
    DeviceResult,
    RunReport,
)

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #1d232a; background: #fff; }
h1 { font-size: 22px; margin: 0 0 6px; } h2 { font-size: 17px; margin: 28px 0 8px; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { border: 1px solid #cdd3da; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eef1f4; }
td:first-child { white-space: nowrap; }
.verdict { font-weight: 600; padding: 1px 6px; border-radius: 4px; }
.v-pass { background: #d6f5dd; color: #0f5c22; }
.v-simulated { background: #fff1c2; color: #6b4e00; }
.v-fail, .v-unreachable { background: #fbd5d5; color: #8a1010; }
.v-reboot_pending { background: #ecd8f7; color: #5b1a80; }
.v-not-verified { background: #e6e6e6; color: #444; }
.s-pass { color: #0f5c22; } .s-fail { color: #8a1010; font-weight: 600; }
.s-skip, .s-not_run { color: #777; }
tr.slow td { background: #fde8e8; }
.flag { color: #8a1010; font-weight: 700; }
.banner { border: 2px solid #e0b400; background: #fff8dc; padding: 8px 12px; margin: 12px 0; }
.meta { color: #555; }
pre { background: #f5f6f8; padding: 8px; white-space: pre-wrap; margin: 4px 0; }
svg text { font: 12px system-ui, sans-serif; fill: #1d232a; }
"""

BAR_COLOR = "#3b7dd8"
BAR_SLOW_COLOR = "#d83b3b"
BAR_SIMULATED_COLOR = "#b7b7b7"


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _verdict_span(verdict: str, text: str) -> str:
    cls = "v-" + verdict.replace(" ", "-")
    return f'<span class="verdict {cls}">{_e(text)}</span>'


def chart(devices: list[DeviceResult]) -> str:
    """Horizontal bars of fp32 TFLOP/s, one per device that reported a number."""
    measured = [d for d in devices if d.tflops_fp32 is not None]
    if not measured:
        return '<p class="meta">No device reported a TFLOP/s figure.</p>'
    label_w, bar_w, row_h, top = 240, 560, 24, 28
    peak = max(d.tflops_fp32 or 0.0 for d in measured) or 1.0
    height = top + row_h * len(measured) + 12
    width = label_w + bar_w + 180
    parts = [
        f'<svg id="tflops-chart" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-label="fp32 TFLOP/s per device">',
        f'<text x="{label_w}" y="16">fp32 (TF32) TFLOP/s per device; red = below '
        f"{SLOW_FRACTION:.0%} of the median of its same-model peers; grey = simulated</text>",
    ]
    for i, device in enumerate(measured):
        value = device.tflops_fp32 or 0.0
        y = top + i * row_h
        w = max(1.0, bar_w * value / peak)
        color = (
            BAR_SIMULATED_COLOR
            if device.simulated
            else (BAR_SLOW_COLOR if device.slow else BAR_COLOR)
        )
        label = f"{device.host} {fmt.device_label(device)}"
        note = " SLOW" if device.slow else (" simulated" if device.simulated else "")
        bf16 = f", bf16 {fmt.number(device.tflops_bf16)}" if device.tflops_bf16 is not None else ""
        classes = (
            "bar" + (" slow" if device.slow else "") + (" simulated" if device.simulated else "")
        )
        title = f"{label}: fp32 {fmt.number(value)}{bf16} TFLOP/s{note}"
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">{_e(label)}</text>'
            f'<rect class="{classes}" data-host="{_e(device.host)}" '
            f'data-device="{_e(device.device)}" data-slow="{str(device.slow).lower()}" '
            f'data-simulated="{str(device.simulated).lower()}" x="{label_w}" y="{y + 3}" '
            f'width="{w:.1f}" height="{row_h - 6}" fill="{color}"><title>{_e(title)}</title></rect>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}">{fmt.number(value)}{_e(note)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _hosts_table(report: RunReport) -> str:
    head = (
        "host", "verdict", "reason", "TensorFlow", "Python", "build CUDA/cuDNN", "driver",
        "devices", "matmul ok", "all-reduce ok", "keras loss falling", "changed",
    )  # fmt: skip
    rows = []
    for h in report.hosts:
        cells = [
            _e(h.name),
            _verdict_span(h.verdict, fmt.verdict_text(h)),
            _e(h.reason),
            _e(fmt.dash(h.tensorflow)),
            _e(fmt.dash(h.python)),
            _e(fmt.build_text(h)),
            _e(fmt.dash(h.driver)),
            _e(fmt.devices_text(h)),
            _e(fmt.matmul_text(h)),
            _e(fmt.yes_no(h.all_reduce_ok)),
            _e(fmt.yes_no(h.keras_loss_falling)),
            _e(h.stats.get("changed", 0)),
        ]
        rows.append(
            f'<tr data-host="{_e(h.name)}" data-verdict="{_e(h.verdict)}">'
            + "".join(f"<td>{c}</td>" for c in cells)
            + "</tr>"
        )
    return _table("hosts", head, rows)


def _checks_table(report: RunReport) -> str:
    names: list[str] = []
    for h in report.hosts:
        names.extend(c.name for c in h.checks if c.name not in names)
    rows = []
    for h in report.hosts:
        cells = [_e(h.name)]
        for name in names:
            check = h.check(name)
            if check is None:
                cells.append("-")
                continue
            text = check.status + (" (simulated)" if check.simulated else "")
            title = f' title="{_e(check.message)}"' if check.message else ""
            cells.append(f'<span class="s-{_e(check.status)}"{title}>{_e(text)}</span>')
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return _table("checks", ["host", *names], rows)


def _devices_table(report: RunReport) -> str:
    head = (
        "host", "device", "model", "correct", "max abs error", "TFLOP/s fp32", "TFLOP/s bf16",
        "median of peers", "flag",
    )  # fmt: skip
    rows = []
    if not report.all_device_results():
        return '<p class="meta">No device results.</p>'
    for d in report.all_device_results():
        if d.slow:
            flag = f'<span class="flag">SLOW</span> {_e(d.slow_reason)}'
        elif d.simulated:
            flag = "simulated (CPU)"
        else:
            flag = ""
        cells = [
            _e(d.host),
            _e(fmt.device_label(d)),
            _e(d.model),
            _e(fmt.yes_no(d.correct)),
            "-" if d.max_abs_error is None else f"{d.max_abs_error:.2e}",
            _e(fmt.number(d.tflops_fp32)),
            _e(fmt.number(d.tflops_bf16)),
            _e(fmt.number(d.peer_median_fp32)),
            flag,
        ]
        cls = ' class="slow"' if d.slow else ""
        rows.append(
            f'<tr{cls} data-device="{_e(d.device)}" data-host="{_e(d.host)}">'
            + "".join(f"<td>{c}</td>" for c in cells)
            + "</tr>"
        )
    return _table("devices", head, rows)


def _table(table_id: str, head: tuple[str, ...] | list[str], rows: list[str]) -> str:
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join(rows)
    return f'<table id="{table_id}"><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>'


def _problems(report: RunReport) -> str:
    out = []
    for host in report.hosts:
        if host.verdict in (PASS, SIMULATED):
            continue
        out.append(f"<h3>{_e(host.name)}: {_verdict_span(host.verdict, host.verdict)}</h3>")
        out.append(f"<p>{_e(host.reason)}</p><ul>")
        for diag in host.diagnoses:
            item = f"<li><strong>{_e(diag.id)}</strong>: {_e(diag.cause)}"
            if diag.fix:
                item += f"<br>Fix: {_e(diag.fix)}"
            if diag.evidence:
                item += "<pre>" + _e("\n".join(diag.evidence)) + "</pre>"
            out.append(item + "</li>")
        out.append("</ul>")
    if not out:
        return ""
    return '<section id="problems"><h2>Problems and fixes</h2>' + "".join(out) + "</section>"


def _warnings(report: RunReport) -> str:
    items = [
        f"<li>{_e(h.name)} <strong>{_e(w['code'])}</strong>: {_e(w['message'])}</li>"
        for h in report.hosts
        for w in h.warnings
    ]
    if not items:
        return ""
    return '<section id="warnings"><h2>Warnings</h2><ul>' + "".join(items) + "</ul></section>"


def render(report: RunReport) -> str:
    counts = ", ".join(f"{n} {v}" for v, n in report.counts().items() if n) or "no hosts"
    banner = ""
    if any(h.verdict == SIMULATED for h in report.hosts):
        banner = (
            '<div class="banner" id="simulated-banner"><strong>Simulated.</strong> Hosts marked '
            "simulated ran every check on CPU logical devices: no GPU was tested there, and "
            "their TFLOP/s figures measure a CPU.</div>"
        )
    guard = "".join(f'<p class="s-fail">Guard error: {_e(g)}</p>' for g in report.guard_errors)
    body = [
        f"<h1>tfgpu-provision report: {_e(report.run_name)}</h1>",
        f'<p class="meta">Run status {_e(report.status)}; finished {_e(report.finished)}; '
        f"exit code <strong>{report.exit_code}</strong>; hosts: {_e(counts)}; "
        f"generated {_e(report.generated_at)}</p>",
        banner,
        guard,
        "<h2>Hosts</h2>",
        _hosts_table(report),
        "<h2>Checks</h2>",
        _checks_table(report),
        '<section id="chart"><h2>TFLOP/s per device</h2>',
        chart(report.all_device_results()),
        "</section>",
        "<h2>Devices</h2>",
        _devices_table(report),
        _problems(report),
        _warnings(report),
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>tfgpu-provision report {_e(report.run_name)}</title>"
        f"<style>{_CSS}</style></head><body>" + "\n".join(b for b in body if b) + "</body></html>\n"
    )
