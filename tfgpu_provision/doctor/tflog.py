"""TensorFlow log lines -> findings, through ``tfgpu_provision.diagnose``.

The log signatures (exact TensorFlow texts -> cause and fix) belong to ``diagnose`` and its
``data/signatures.yaml``; the doctor keeps no second copy. This adapter hands the log that the
env's TensorFlow printed (loader messages on) to ``diagnose.diagnose`` with the context the
evidence gives, and keeps the diagnoses that quote a log line: the ones that only restate a
state (no GPU, CPU-only build, CUDA_VISIBLE_DEVICES set) are the doctor's own fact rules
already, with more evidence. Log findings rank after the fact correlations; ``info`` ones
(known harmless noise) are dropped. Without the module, there are no log findings.
"""

from __future__ import annotations

import importlib
from typing import Any

from tfgpu_provision.doctor.evidence import Evidence
from tfgpu_provision.doctor.rules import Finding

# Below the fact correlations (which explain the same symptoms with more evidence).
LOG_LIKELIHOOD = 50
KEPT_SEVERITIES = ("error", "warning")


def context(ev: Evidence) -> dict[str, Any]:
    """The ``context_keys`` of signatures.yaml, from the doctor's evidence."""
    expected = max(ev.gpu_count, len(ev.cuda_devices))
    tf_gpus = ev.tf_gpu_count
    return {
        "gpus_missing": tf_gpus is not None and (tf_gpus == 0 or tf_gpus < expected),
        "gpu_hardware_expected": ev.gpu_count > 0,
        "simulated": False,
        "cuda_build": ev.tf_result.get("built_with_cuda") if ev.tf_ran else None,
        "tensorflow_imported": ev.tf_ran,
        "cuda_visible_devices_set": bool(ev.visible_devices()),
    }


def findings(ev: Evidence) -> list[Finding]:
    lines = ev.tf_log
    if not lines:
        return []
    try:
        diagnose = importlib.import_module("tfgpu_provision.diagnose")
    except ImportError:
        return []
    out: list[Finding] = []
    for item in diagnose.diagnose(lines, context(ev)):
        if not item.lines or item.severity not in KEPT_SEVERITIES:
            continue
        out.append(
            Finding(
                id=f"tf_log:{item.id}",
                title=item.title,
                severity=item.severity,
                likelihood=LOG_LIKELIHOOD,
                evidence=[f"TensorFlow log: {line}" for line in item.lines],
                cause=item.cause,
                fix=item.fix,
                source="tf-log",
            )
        )
    return out
