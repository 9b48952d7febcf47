"""The preflight decision for one host: raw probe output -> facts -> resolved stack -> verdict.

Called by the ``tfgpu_preflight`` action plugin of the ``gpu_preflight`` role on the
controller, so that plain ``ansible-playbook`` runs and ``tfgpu-provision`` runs decide
exactly alike. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tfgpu_provision import compat, facts
from tfgpu_provision.errors import TfgpuError


@dataclass
class PreflightOutcome:
    """What the preflight concluded for one host."""

    host: dict[str, Any]
    resolution: dict[str, Any] | None
    failures: list[dict[str, str]] = field(default_factory=list)
    notes: list[dict[str, str]] = field(default_factory=list)
    simulated_gpus: int = 0

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    def summary(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "resolution": self.resolution,
            "failures": self.failures,
            "notes": self.notes,
            "simulated_gpus": self.simulated_gpus,
            "status": "failed" if self.failed else "ok",
        }

    def to_result(self) -> dict[str, Any]:
        """The Ansible task result: facts for later roles plus a readable message."""
        summary = self.summary()
        stack = (self.resolution or {}).get("stack")
        result: dict[str, Any] = {
            "changed": False,
            "failed": self.failed,
            "tfgpu_preflight": summary,
            "ansible_facts": {
                "tfgpu_host": self.host,
                "tfgpu_stack": stack,
                "tfgpu_preflight": summary,
            },
        }
        if self.failed:
            result["msg"] = " ".join(f"{f['message']} Fix: {f['fix']}" for f in self.failures)
        else:
            result["msg"] = _describe(self.host, stack, self.simulated_gpus)
        return result


def _describe(host: Mapping[str, Any], stack: Mapping[str, Any] | None, simulated: int) -> str:
    gpus = host.get("gpu_count") or 0
    where = f"{gpus} NVIDIA GPU(s)" if gpus else "no NVIDIA GPU"
    if not gpus and simulated:
        where += f" ({simulated} simulated)"
    if not stack:
        return where
    return (
        f"{where}; target TensorFlow {stack.get('tensorflow')} with CUDA {stack.get('cuda')}, "
        f"cuDNN {stack.get('cudnn')}"
    )


def _finding(code: str, message: str, fix: str) -> dict[str, str]:
    return {"code": code, "message": message, "fix": fix}


def evaluate(
    *,
    raw: Mapping[str, Any],
    request: object,
    pins: Mapping[str, Any],
    require_gpu: bool = False,
    simulate_gpus: int = 0,
) -> PreflightOutcome:
    """Decide one host: never raises; every problem becomes a failure with a fix."""
    host = dict(facts.host_facts_from_probe(raw))
    try:
        series = compat.parse_request(request)
    except TfgpuError as exc:
        return PreflightOutcome(
            host=host,
            resolution=None,
            failures=[_finding("BAD_TENSORFLOW_VERSION", exc.message, exc.fix or "")],
        )

    resolution = compat.resolve(series, host, pins)
    outcome = PreflightOutcome(
        host=host, resolution=resolution.to_dict(), simulated_gpus=simulate_gpus
    )
    outcome.failures.extend(f.to_dict() for f in resolution.errors)
    locks = host.get("locks")
    for lock in locks if isinstance(locks, list) else []:
        outcome.notes.append(
            _finding(
                "PACKAGE_LOCK_HELD",
                f"{lock.get('path')} is held by pid {lock.get('pid')} ({lock.get('command')}); "
                "package installs wait up to 60 s for it, then fail.",
                "Let that process finish (or stop it), then rerun.",
            )
        )

    if not host.get("gpu_count"):
        if require_gpu:
            outcome.failures.append(
                _finding(
                    "NO_GPU_REQUIRED",
                    "No NVIDIA GPU was found on this host (no display controller with vendor 10de) "
                    "and tfgpu_require_gpu is true.",
                    "Remove the host from gpu_nodes, check that the GPU is seated and passed "
                    "through (lspci -nn -d 10de:), or set tfgpu_require_gpu: false.",
                )
            )
        elif simulate_gpus:
            outcome.notes.append(
                _finding(
                    "SIMULATED_GPUS",
                    f"No NVIDIA GPU here; verify will simulate {simulate_gpus} devices on the CPU "
                    "and report them as simulated, never as a GPU pass.",
                    "Nothing to do on a sandbox or CI host; on a real node set "
                    "tfgpu_simulate_gpus: 0.",
                )
            )
    return outcome
