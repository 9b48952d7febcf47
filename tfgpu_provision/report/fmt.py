"""Cell texts shared by the renderers, so every format says the same thing the same way."""

from __future__ import annotations

from tfgpu_provision.report.model import SIMULATED, DeviceResult, HostReport


def yes_no(value: bool | None) -> str:
    """``yes`` / ``NO`` / ``-`` (unknown)."""
    if value is None:
        return "-"
    return "yes" if value else "NO"


def dash(value: object) -> str:
    return "-" if value in (None, "", []) else str(value)


def number(value: float | None) -> str:
    """A TFLOP/s-like figure: one decimal, two below 10 (simulated CPU devices are ~0.1)."""
    if value is None:
        return "-"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def verdict_text(host: HostReport) -> str:
    """The verdict as shown to people: a simulated result always says so."""
    if host.verdict == SIMULATED:
        return "simulated (no GPU)"
    return host.verdict


def build_text(host: HostReport) -> str:
    if not host.build_cuda and not host.build_cudnn:
        return "-"
    return f"CUDA {dash(host.build_cuda)} / cuDNN {dash(host.build_cudnn)}"


def devices_text(host: HostReport) -> str:
    if not host.devices:
        expected = f" (expected {host.expected_gpus} GPU)" if host.expected_gpus else ""
        return "-" + expected if not host.verify_present else "0" + expected
    parts = []
    if host.gpu_devices:
        parts.append(f"{host.gpu_devices} GPU")
    if host.simulated_devices:
        parts.append(f"{host.simulated_devices} simulated")
    others = len(host.devices) - host.gpu_devices - host.simulated_devices
    if others:
        parts.append(f"{others} CPU")
    text = ", ".join(parts)
    if (
        not host.simulated
        and host.expected_gpus is not None
        and host.expected_gpus != host.gpu_devices
    ):
        text += f" (expected {host.expected_gpus} GPU)"
    return text


def matmul_text(host: HostReport) -> str:
    results = [d for d in host.device_results if d.correct is not None]
    if not results:
        return "-"
    good = sum(1 for d in results if d.correct)
    return f"{'yes' if good == len(results) else 'NO'} ({good}/{len(results)})"


def short_device(device: str) -> str:
    """``/job:localhost/replica:0/task:0/device:GPU:0`` -> ``GPU:0``."""
    return device.rsplit("device:", 1)[-1]


def device_label(device: DeviceResult) -> str:
    short = short_device(device.device)
    return f"{short} (simulated)" if device.simulated else short


def tflops_text(host: HostReport) -> str:
    """``GPU:0 61.2`` per device, with the slow flag; ``-`` when nothing was measured."""
    cells = []
    for device in host.device_results:
        if device.tflops_fp32 is None:
            continue
        flag = " SLOW" if device.slow else ""
        cells.append(f"{short_device(device.device)} {number(device.tflops_fp32)}{flag}")
    if not cells:
        return "-"
    suffix = " (simulated, CPU)" if host.simulated else ""
    return ", ".join(cells) + suffix
