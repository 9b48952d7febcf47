#!/usr/bin/env python3
"""tfgpu-provision verify check: proves that TensorFlow uses every GPU of this host.

Shipped by the tf_verify role and run inside the TensorFlow env (through the tfgpu-env
wrapper). Standard library plus TensorFlow (and the NumPy it brings) only; Python 3.10+.

It prints ONE JSON document (schema "tfgpu-provision/verify/1", described in
docs/verify-document.md) on stdout, and writes it to --output when given. Stages:

  versions   -> TensorFlow/Keras/NumPy/Python versions and tf.sysconfig.get_build_info()
  gpus       -> tf.config.list_physical_devices('GPU'); memory growth set on every GPU before
                any use; the count must equal the expected count (the preflight's facts)
  matmul     -> per device: fp32 (TF32 where enabled) and bf16 matmul checked against a NumPy
                float64 reference, and TFLOP/s
  allreduce  -> MirroredStrategy over all devices: replica i contributes i+1, the sum must be
                exact on every replica
  keras      -> a tiny Keras model trained a few steps under the strategy: the loss must fall
  placement  -> the device strings of the tensors and variables above must name every
                expected device (and only those)

The TensorFlow work runs in a child process whose stderr (TensorFlow's C++ log) goes to a file;
the parent (no TensorFlow import) times it out, quotes the log and matches it against the
failure signatures given with --signatures (JSON; the one copy of the rules is
tfgpu_provision/data/signatures.yaml). If the child dies, the stages it finished still count
and the stage it was in fails with the log that explains it.

--simulate-devices N on a host where TensorFlow sees no GPU (and none is expected) splits the
CPU into N logical devices and runs the same multi-device checks; every result then says
"simulated": true, and it is never a GPU pass.

Exit status: 0 pass, 1 fail, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone

SCHEMA = "tfgpu-provision/verify/1"
SCRIPT_VERSION = "1.0.0"
STAGES = ("versions", "gpus", "matmul", "allreduce", "keras", "placement")
SEVERITIES = ("error", "warning", "info")

# Numerical check of a matmul of two N(0, 1) matrices: |result - reference| is divided by
# sqrt(inner dimension), the standard deviation of one output element, so the tolerances hold
# for any size. TF32 keeps 10 mantissa bits (about 1e-3 here at most); bf16 keeps 7, plus the
# bf16 rounding of the output (about 1e-2 at most; 0.011 measured on CPU). A wrong kernel or
# device is off by about 1.
TOLERANCE = {"fp32": 1e-2, "bf16": 5e-2}
# The numerical check runs at most at this size (the float64 reference is computed on the CPU).
MAX_CHECK_SIZE = 1024
DEFAULT_SIZE_GPU = 4096
DEFAULT_SIZE_CPU = 512
# How long the TFLOP/s measurement runs per device and dtype.
MIN_SECONDS_GPU = 0.25
MIN_SECONDS_CPU = 0.05
MAX_ITERATIONS = 2000

KERAS_SAMPLES = 512
KERAS_EPOCHS = 4

MAX_LOG_LINES = 400
LOG_HEAD_LINES = 150
MAX_LINE_CHARS = 1000
MAX_QUOTED_LINES = 3
MAX_QUOTE_CHARS = 500

DEFAULT_SIGNATURES = "tfgpu_signatures.json"


# ----------------------------------------------------------------------------- arguments
def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def parse_visible_devices(text: str | None) -> list[str] | None:
    """'0,2' -> ['0', '2']; None or 'all' -> None (no selection). UUIDs (GPU-...) pass as is."""
    if text is None or text.strip().lower() in ("", "all"):
        return None
    items = [item.strip() for item in text.split(",") if item.strip()]
    for item in items:
        if not (item.isdigit() or item.startswith(("GPU-", "MIG-"))):
            raise argparse.ArgumentTypeError(
                f"--visible-devices: {item!r} is not a GPU index or a GPU-/MIG- UUID"
            )
    if len(set(items)) != len(items):
        raise argparse.ArgumentTypeError("--visible-devices: a GPU is listed twice")
    return items


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Prove that TensorFlow uses every GPU of this host; prints one JSON document."
    )
    parser.add_argument(
        "--expected-gpus",
        type=_non_negative_int,
        default=0,
        help="GPUs the host has (the preflight facts); TensorFlow must see exactly these",
    )
    parser.add_argument(
        "--simulate-devices",
        type=_non_negative_int,
        default=0,
        help="with no GPU (and none expected): run the checks on N logical CPU devices (simulated)",
    )
    parser.add_argument(
        "--visible-devices",
        default=None,
        help="check only these GPUs (comma-separated indexes or UUIDs; sets CUDA_VISIBLE_DEVICES)",
    )
    parser.add_argument("--output", default=None, help="also write the JSON document to this file")
    parser.add_argument(
        "--matmul-size",
        type=_non_negative_int,
        default=0,
        help=f"N of the N x N matmul timed per device (0: {DEFAULT_SIZE_GPU} on GPUs, "
        f"{DEFAULT_SIZE_CPU} simulated)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=900.0,
        help="seconds for all TensorFlow work (first runs on new GPUs may JIT-compile PTX)",
    )
    parser.add_argument(
        "--signatures",
        default=None,
        help=f"failure signatures (JSON); default: {DEFAULT_SIGNATURES} next to this script",
    )
    # Internal: the TensorFlow side, started by the parent with the results file to write.
    parser.add_argument("--child-results", default=None, help=argparse.SUPPRESS)
    return parser


# ----------------------------------------------------------------------------- pure helpers
def device_id(name: str | None) -> str | None:
    """'/job:localhost/replica:0/task:0/device:GPU:1' or '/device:GPU:1' -> 'GPU:1'."""
    if not name:
        return None
    match = re.search(r"device:([A-Za-z_]+):(\d+)", name)
    if not match:
        return None
    return f"{match.group(1).upper()}:{match.group(2)}"


def check_matmul(result, reference, inner_dim: int, tolerance: float) -> dict:
    """Compare a matmul result of two N(0, 1) matrices with its float64 reference.

    Returns {ok, max_abs_error, scaled_error, tolerance}; scaled_error is the largest absolute
    error divided by sqrt(inner_dim) (the spread of one output element).
    """
    import numpy as np

    got = np.asarray(result, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if got.shape != ref.shape:
        return {
            "ok": False,
            "max_abs_error": None,
            "scaled_error": None,
            "tolerance": tolerance,
            "error": f"shape {list(got.shape)} != reference {list(ref.shape)}",
        }
    if not np.all(np.isfinite(got)):
        return {
            "ok": False,
            "max_abs_error": None,
            "scaled_error": None,
            "tolerance": tolerance,
            "error": "the result contains NaN or Inf",
        }
    max_abs = float(np.max(np.abs(got - ref))) if got.size else 0.0
    scaled = max_abs / math.sqrt(max(inner_dim, 1))
    return {
        "ok": scaled <= tolerance,
        "max_abs_error": max_abs,
        "scaled_error": scaled,
        "tolerance": tolerance,
    }


def loss_fell(losses: list) -> bool:
    """True when every loss is finite and the last is below the first."""
    values = [float(v) for v in losses]
    return len(values) >= 2 and all(math.isfinite(v) for v in values) and values[-1] < values[0]


def _when_holds(when: dict, context: dict) -> bool:
    return all(context.get(key) == value for key, value in when.items())


def match_signatures(lines: list, signatures: list, context: dict) -> list:
    """The signatures that match the log lines and the context, most relevant first.

    The same rules as tfgpu_provision.diagnose.diagnose (kept identical by its tests):
    a pattern must match a line, a `when` must hold; ranked by (explains missing GPUs while
    GPUs are missing), priority, severity, specific before fallback, first matching line,
    file order.
    """
    gpus_missing = bool(context.get("gpus_missing"))
    ranked = []
    for order, sig in enumerate(signatures):
        when = sig.get("when") or {}
        if when and not _when_holds(when, context):
            continue
        quoted: list = []
        first_line = len(lines)
        pattern = sig.get("pattern")
        if pattern:
            regex = re.compile(pattern)
            for index, line in enumerate(lines):
                if regex.search(line):
                    first_line = min(first_line, index)
                    if len(quoted) < MAX_QUOTED_LINES:
                        quoted.append(line.strip()[:MAX_QUOTE_CHARS])
            if not quoted:
                continue
        severity = sig.get("severity", "error")
        key = (
            0 if gpus_missing and sig.get("explains_missing_gpu") else 1,
            -int(sig.get("priority") or 0),
            SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES),
            1 if sig.get("fallback") else 0,
            first_line,
            order,
        )
        ranked.append(
            (
                key,
                {
                    "id": sig.get("id"),
                    "title": sig.get("title"),
                    "severity": severity,
                    "cause": sig.get("cause"),
                    "fix": sig.get("fix"),
                    "source": sig.get("source"),
                    "explains_missing_gpu": bool(sig.get("explains_missing_gpu")),
                    "lines": quoted,
                },
            )
        )
    ranked.sort(key=lambda item: item[0])
    return [diagnosis for _, diagnosis in ranked]


def trim_log(lines: list) -> tuple:
    """Keep the head and the tail of a long log; each line at most MAX_LINE_CHARS."""
    lines = [line[:MAX_LINE_CHARS] for line in lines]
    if len(lines) <= MAX_LOG_LINES:
        return lines, False
    tail = MAX_LOG_LINES - LOG_HEAD_LINES
    return [*lines[:LOG_HEAD_LINES], "[... log lines left out ...]", *lines[-tail:]], True


# ----------------------------------------------------------------------------- child: TF work
class _Recorder:
    """Appends one JSON record per line to the results file, flushed at once, so the parent
    knows how far the child got even if TensorFlow aborts the process."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the child

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record, default=str) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())


class _Check:
    """State shared by the stages of one child run."""

    def __init__(self, args: argparse.Namespace, recorder: _Recorder) -> None:
        self.args = args
        self.recorder = recorder
        self.tf = None
        self.np = None
        self.simulated = False
        self.devices: list = []  # logical device names the multi-device stages use
        self.device_kind = "GPU"
        self.gpu_info: dict = {}  # logical name -> facts of the physical GPU
        self.strategy = None
        self.observations: list = []  # (source, expected device, tensor device string)
        self.stop_reason: str | None = None
        self.context: dict = {
            "tensorflow_imported": False,
            "cuda_build": None,
            "simulated": False,
            "gpus_missing": False,
            "gpu_hardware_expected": args.expected_gpus > 0,
            "cuda_visible_devices_set": "CUDA_VISIBLE_DEVICES" in os.environ,
        }

    def info(self, key: str, value) -> None:
        self.recorder.write({"event": "info", "key": key, "value": value})

    def observe(self, source: str, expected: str, tensor_device: str) -> None:
        self.observations.append(
            {"source": source, "expected": expected, "device_string": tensor_device}
        )


def stage_versions(check: _Check) -> tuple:
    try:
        import numpy as np
        import tensorflow as tf
    except Exception as exc:  # ImportError, or a broken native library
        traceback.print_exc()
        check.stop_reason = "TensorFlow could not be imported"
        return "fail", {"message": f"cannot import TensorFlow: {type(exc).__name__}: {exc}"}
    check.tf, check.np = tf, np
    check.context["tensorflow_imported"] = True
    try:
        import keras

        keras_version = getattr(keras, "__version__", None)
    except Exception:  # Keras is optional for this stage; the keras stage reports it
        keras_version = None
    raw_build = dict(tf.sysconfig.get_build_info())
    build = {
        "cuda_version": raw_build.get("cuda_version"),
        "cudnn_version": raw_build.get("cudnn_version"),
        "cuda_compute_capabilities": list(raw_build.get("cuda_compute_capabilities") or []),
        "is_cuda_build": bool(raw_build.get("is_cuda_build", False)),
        "is_rocm_build": bool(raw_build.get("is_rocm_build", False)),
        "is_tensorrt_build": bool(raw_build.get("is_tensorrt_build", False)),
    }
    check.context["cuda_build"] = build["is_cuda_build"]
    versions = {
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "env_prefix": sys.prefix,
        "tensorflow": tf.__version__,
        "tensorflow_git": getattr(tf, "__git_version__", None),
        "keras": keras_version,
        "numpy": np.__version__,
    }
    check.info("versions", versions)
    check.info("build", build)
    environment = {
        name: os.environ.get(name)
        for name in (
            "CUDA_VISIBLE_DEVICES",
            "TF_FORCE_GPU_ALLOW_GROWTH",
            "LD_LIBRARY_PATH",
            "XLA_FLAGS",
            "TF_CPP_VMODULE",
        )
    }
    message = f"TensorFlow {tf.__version__}"
    if build["is_cuda_build"]:
        message += f", built with CUDA {build['cuda_version']} / cuDNN {build['cudnn_version']}"
    else:
        message += ", a build without CUDA"
    return "pass", {
        "message": message,
        **versions,
        "build": build,
        "tf32_enabled": bool(tf.config.experimental.tensor_float_32_execution_enabled()),
        "environment": environment,
    }


def _compute_capability(details: dict) -> str | None:
    value = details.get("compute_capability")
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return f"{value[0]}.{value[1]}"
    return None


def _build_has_kernels(cc: str | None, capabilities: list) -> bool | None:
    """True when the build has SASS for this compute capability (sm_XY); False when only PTX
    of a lower arch (JIT at start-up) or nothing fits; None when unknown."""
    if not cc or not capabilities:
        return None
    return f"sm_{cc.replace('.', '')}" in capabilities


def stage_gpus(check: _Check) -> tuple:
    tf, args = check.tf, check.args
    selection = parse_visible_devices(args.visible_devices)
    expected = len(selection) if selection is not None else args.expected_gpus
    physical = tf.config.list_physical_devices("GPU")
    # Memory growth: identical on every GPU and before anything initialises the runtime.
    growth_errors = []
    for gpu in physical:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError) as exc:
            growth_errors.append(f"{gpu.name}: {exc}")
    build_caps = list(dict(tf.sysconfig.get_build_info()).get("cuda_compute_capabilities") or [])
    gpus = []
    warnings = []
    for index, gpu in enumerate(physical):
        try:
            details = dict(tf.config.experimental.get_device_details(gpu))
        except Exception:  # details are informative only
            details = {}
        cc = _compute_capability(details)
        has_kernels = _build_has_kernels(cc, build_caps)
        if has_kernels is False:
            warnings.append(
                f"GPU {index} (compute capability {cc}) is not in the build's "
                f"{' '.join(build_caps)}: kernels are JIT-compiled from PTX"
            )
        gpus.append(
            {
                "index": index,
                "physical_name": gpu.name,
                "device_name": details.get("device_name"),
                "compute_capability": cc,
                "memory_growth": bool(tf.config.experimental.get_memory_growth(gpu)),
                "build_has_kernels": has_kernels,
            }
        )
    found = len(physical)
    details: dict = {
        "expected": expected,
        "expected_from_facts": args.expected_gpus,
        "visible_devices": selection,
        "found": found,
        "gpus": gpus,
        "memory_growth": True if physical and not growth_errors else None,
        "simulate_devices": args.simulate_devices,
    }
    if growth_errors:
        details["memory_growth_errors"] = growth_errors
    if warnings:
        details["warnings"] = warnings

    if found == 0 and args.simulate_devices > 0 and expected == 0:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(args.simulate_devices)]
        )
        check.simulated = True
        check.context["simulated"] = True
        check.device_kind = "CPU"
        check.devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        details["devices"] = list(check.devices)
        details["message"] = (
            f"no GPU on this host: {len(check.devices)} logical CPU devices stand in "
            "(simulated, not a GPU check)"
        )
        check.info(
            "devices",
            [
                {"index": i, "name": name, "kind": "CPU", "simulated": True}
                for i, name in enumerate(check.devices)
            ],
        )
        return ("pass" if len(check.devices) == args.simulate_devices else "fail"), details

    check.devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    details["devices"] = list(check.devices)
    for name, gpu in zip(check.devices, gpus, strict=False):
        check.gpu_info[name] = gpu
    check.info(
        "devices",
        [
            {"name": name, "kind": "GPU", "simulated": False, **check.gpu_info.get(name, {})}
            for name in check.devices
        ],
    )
    ok = found == expected and found > 0 and not growth_errors
    check.context["gpus_missing"] = found < expected or found == 0
    if ok:
        details["message"] = f"TensorFlow sees {found} GPU(s), as expected"
        return "pass", details
    if found == 0 and expected == 0:
        details["message"] = "TensorFlow sees no GPU and simulation is off"
    else:
        details["message"] = f"TensorFlow sees {found} GPU(s), expected {expected}"
    if growth_errors:
        details["message"] += "; memory growth could not be set on every GPU"
    if found == 0 and args.simulate_devices > 0:
        details["note"] = (
            "simulation is not used on a host whose GPUs TensorFlow cannot see: it would hide "
            "the failure"
        )
    if not check.devices:
        check.stop_reason = "no GPU visible to TensorFlow"
    return "fail", details


def _sync(tensor) -> None:
    # Reading one element waits for the device's queue: the timing covers all queued matmuls.
    float(tensor[0, 0])


def _time_matmul(check: _Check, device: str, size: int, dtype) -> dict:
    tf = check.tf
    min_seconds = MIN_SECONDS_CPU if check.simulated else MIN_SECONDS_GPU
    with tf.device(device):
        x = tf.cast(tf.random.normal([size, size], seed=1), dtype)
        y = tf.cast(tf.random.normal([size, size], seed=2), dtype)
        out = tf.linalg.matmul(x, y)  # warm-up: kernel selection, allocation
        _sync(out)
        iterations, batch = 0, 1
        start = time.perf_counter()
        while True:
            for _ in range(batch):
                out = tf.linalg.matmul(x, y)
            iterations += batch
            _sync(out)
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds or iterations >= MAX_ITERATIONS:
                break
            batch = min(batch * 2, MAX_ITERATIONS - iterations)
    flops = 2.0 * size**3 * iterations
    return {
        "size": size,
        "iterations": iterations,
        "seconds": round(elapsed, 6),
        "tflops": round(flops / elapsed / 1e12, 6) if elapsed > 0 else None,
    }


def stage_matmul(check: _Check) -> tuple:
    tf, np = check.tf, check.np
    size = check.args.matmul_size or (DEFAULT_SIZE_CPU if check.simulated else DEFAULT_SIZE_GPU)
    n = min(size, MAX_CHECK_SIZE)
    rng = np.random.default_rng(20240607)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    inputs = {
        "fp32": (a, b, tf.float32),
        # bf16 is checked against the float64 product of the bf16-rounded inputs.
        "bf16": (
            tf.cast(tf.cast(a, tf.bfloat16), tf.float32).numpy(),
            tf.cast(tf.cast(b, tf.bfloat16), tf.float32).numpy(),
            tf.bfloat16,
        ),
    }
    references = {
        key: x.astype(np.float64) @ y.astype(np.float64) for key, (x, y, _) in inputs.items()
    }
    results = []
    for device in check.devices:
        entry: dict = {"device": device, "simulated": check.simulated}
        gpu = check.gpu_info.get(device, {})
        for key, (x, y, dtype) in inputs.items():
            try:
                with tf.device(device):
                    tx = tf.identity(tf.cast(tf.constant(x), dtype))
                    ty = tf.identity(tf.cast(tf.constant(y), dtype))
                    product = tf.linalg.matmul(tx, ty)
                got = tf.cast(product, tf.float32).numpy()
                check.observe(f"matmul {key}", device, product.device)
                outcome = check_matmul(got, references[key], n, TOLERANCE[key])
                outcome.update(
                    check_size=n,
                    device_string=product.device,
                    placed_on_device=device_id(product.device) == device_id(device),
                )
                outcome.update(_time_matmul(check, device, size, dtype))
                outcome["status"] = (
                    "pass" if outcome["ok"] and outcome["placed_on_device"] else "fail"
                )
            except Exception as exc:
                traceback.print_exc()
                cc = gpu.get("compute_capability")
                # bf16 matmul needs compute capability 8.0 (Ampere) or newer on GPUs.
                old_gpu = bool(cc) and float(cc) < 8.0
                outcome = {
                    "status": "skip" if key == "bf16" and old_gpu else "fail",
                    "error": f"{type(exc).__name__}: {exc}"[:MAX_QUOTE_CHARS],
                }
            if key == "fp32":
                outcome["tf32"] = bool(tf.config.experimental.tensor_float_32_execution_enabled())
            entry[key] = outcome
        statuses = [entry[key]["status"] for key in inputs]
        entry["status"] = "fail" if "fail" in statuses else "pass"
        results.append(entry)
    failed = [e["device"] for e in results if e["status"] == "fail"]
    details = {
        "size": size,
        "check_size": n,
        "tolerance": dict(TOLERANCE),
        "devices": results,
        "note": (
            "fp32 matmul runs as TF32 on compute capability 8.0+ while TF32 is enabled "
            "(TensorFlow's default): compare its TFLOP/s with the TF32 peak"
        ),
    }
    if not results:
        details["message"] = "no device to test"
        return "fail", details
    if failed:
        details["message"] = f"matmul wrong or misplaced on {', '.join(failed)}"
        return "fail", details
    details["message"] = f"matmul correct on {len(results)} device(s)" + (
        " (simulated)" if check.simulated else ""
    )
    return "pass", details


def _cross_device_ops_name(strategy) -> str | None:
    ops = getattr(strategy.extended, "_cross_device_ops", None)
    return type(ops).__name__ if ops is not None else None


def stage_allreduce(check: _Check) -> tuple:
    tf = check.tf
    strategy = tf.distribute.MirroredStrategy(devices=list(check.devices))
    check.strategy = strategy
    replicas = strategy.num_replicas_in_sync
    width = 4

    def contribute():
        ctx = tf.distribute.get_replica_context()
        value = tf.cast(ctx.replica_id_in_sync_group + 1, tf.float32) * tf.ones([width])
        return value, ctx.all_reduce(tf.distribute.ReduceOp.SUM, value)

    values, sums = strategy.run(contribute)
    expected_sum = replicas * (replicas + 1) / 2
    local_values = strategy.experimental_local_results(values)
    local_sums = strategy.experimental_local_results(sums)
    rows = []
    for index, (value, total) in enumerate(zip(local_values, local_sums, strict=False)):
        device = check.devices[index] if index < len(check.devices) else None
        contributed = value.numpy().tolist()
        result = total.numpy().tolist()
        check.observe("allreduce value", device, value.device)
        check.observe("allreduce result", device, total.device)
        rows.append(
            {
                "replica": index,
                "device": device,
                "simulated": check.simulated,
                "contributed": contributed[0],
                "result": result[0],
                "device_string": total.device,
                "ok": contributed == [float(index + 1)] * width
                and result == [expected_sum] * width,
            }
        )
    reduced = strategy.reduce(tf.distribute.ReduceOp.SUM, values, axis=None).numpy().tolist()
    ops = _cross_device_ops_name(strategy)
    details = {
        "replicas": replicas,
        "devices": list(check.devices),
        "expected_sum": expected_sum,
        "strategy_reduce": reduced[0] if reduced else None,
        "per_replica": rows,
        "cross_device_ops": ops,
        "nccl": ops == "NcclAllReduce",
    }
    ok = (
        replicas == len(check.devices)
        and all(row["ok"] for row in rows)
        and len(rows) == replicas
        and reduced == [expected_sum] * width
    )
    if not check.simulated and replicas > 1 and ops != "NcclAllReduce":
        details["warning"] = f"all-reduce uses {ops}, not NCCL: multi-GPU training will be slower"
    details["message"] = (
        f"all-reduce over {replicas} replicas: sum {expected_sum:g} on every replica"
        if ok
        else f"all-reduce wrong: expected {expected_sum:g} on {len(check.devices)} replicas"
    )
    return ("pass" if ok else "fail"), details


def stage_keras(check: _Check) -> tuple:
    tf, np = check.tf, check.np
    if check.strategy is None:
        return "skip", {"message": "no strategy (the all-reduce stage did not run)"}
    try:
        import keras
    except ImportError:
        keras = tf.keras
    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((KERAS_SAMPLES, 8)).astype(np.float32)
    true_w = rng.standard_normal((8, 1)).astype(np.float32)
    y = x @ true_w + 0.01 * rng.standard_normal((KERAS_SAMPLES, 1)).astype(np.float32)
    replicas = check.strategy.num_replicas_in_sync
    batch = 32 * replicas
    with check.strategy.scope():
        model = keras.Sequential(
            [
                keras.Input((8,)),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dense(1),
            ]
        )
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse")
    history = model.fit(x, y, epochs=KERAS_EPOCHS, batch_size=batch, shuffle=False, verbose=0)
    losses = [float(v) for v in history.history["loss"]]
    variables = []
    in_sync = True
    for var in model.trainable_variables:
        inner = getattr(var, "value", var)
        components = list(getattr(inner, "values", None) or [inner])
        devices = [c.device for c in components]
        for component, device in zip(components, check.devices, strict=False):
            check.observe(
                f"keras variable {getattr(var, 'path', var.name)}", device, component.device
            )
        arrays = [np.asarray(c.numpy()) for c in components]
        spread = max(float(np.max(np.abs(arr - arrays[0]))) for arr in arrays)
        in_sync = in_sync and spread == 0.0
        variables.append(
            {
                "name": str(getattr(var, "path", var.name)),
                "replicas": len(components),
                "devices": devices,
                "max_replica_difference": spread,
            }
        )
    steps = KERAS_EPOCHS * math.ceil(KERAS_SAMPLES / batch)
    fell = loss_fell(losses)
    mirrored = all(v["replicas"] == len(check.devices) for v in variables)
    details = {
        "losses": losses,
        "loss_fell": fell,
        "epochs": KERAS_EPOCHS,
        "steps": steps,
        "global_batch_size": batch,
        "replicas": replicas,
        "simulated": check.simulated,
        "variables": variables,
        "replicas_in_sync": in_sync,
    }
    ok = fell and in_sync and mirrored
    if ok:
        details["message"] = (
            f"{steps} training steps on {replicas} replicas: loss {losses[0]:.4g} -> "
            f"{losses[-1]:.4g}"
        )
    elif not fell:
        details["message"] = f"the loss did not fall: {losses}"
    else:
        details["message"] = "the model's variables are not mirrored, identical, on every replica"
    return ("pass" if ok else "fail"), details


def stage_placement(check: _Check) -> tuple:
    expected = [device_id(d) for d in check.devices]
    rows = []
    for obs in check.observations:
        actual = device_id(obs["device_string"])
        rows.append({**obs, "ok": actual is not None and actual == device_id(obs["expected"])})
    sources = sorted({row["source"].split(" ")[0] for row in rows})
    missing = []
    for source in ("matmul", "allreduce", "keras"):
        covered = {device_id(r["expected"]) for r in rows if r["source"].startswith(source)}
        missing.extend(f"{source} on {d}" for d in expected if d not in covered)
    wrong = [row for row in rows if not row["ok"]]
    cpu_fallback = not check.simulated and any(
        (device_id(row["device_string"]) or "").startswith("CPU") for row in rows
    )
    details = {
        "expected_devices": expected,
        "simulated": check.simulated,
        "sources": sources,
        "observations": rows,
        "cpu_fallback": cpu_fallback,
    }
    if missing:
        details["missing"] = missing
    ok = bool(rows) and not wrong and not missing and not cpu_fallback
    if ok:
        details["message"] = (
            f"{len(rows)} tensors and variables on the expected devices ({', '.join(expected)})"
        )
    elif cpu_fallback:
        details["message"] = "tensors expected on GPUs were placed on the CPU"
    elif wrong:
        details["message"] = (
            f"{len(wrong)} tensor(s) on an unexpected device, e.g. {wrong[0]['source']}: "
            f"{wrong[0]['device_string']} instead of {wrong[0]['expected']}"
        )
    else:
        details["message"] = "no placement evidence for: " + ", ".join(missing[:6])
    return ("pass" if ok else "fail"), details


STAGE_FUNCTIONS = {
    "versions": stage_versions,
    "gpus": stage_gpus,
    "matmul": stage_matmul,
    "allreduce": stage_allreduce,
    "keras": stage_keras,
    "placement": stage_placement,
}


def run_child(args: argparse.Namespace) -> int:
    check = _Check(args, _Recorder(args.child_results))
    for name in STAGES:
        if check.stop_reason:
            check.recorder.write(
                {
                    "event": "stage",
                    "stage": {
                        "name": name,
                        "status": "skip",
                        "simulated": check.simulated,
                        "details": {"message": f"not run: {check.stop_reason}"},
                        "duration_s": 0.0,
                    },
                }
            )
            continue
        check.recorder.write({"event": "start", "stage": name})
        start = time.monotonic()
        try:
            status, details = STAGE_FUNCTIONS[name](check)
        except Exception as exc:
            traceback.print_exc()  # into TensorFlow's log: the diagnoses read it
            status = "fail"
            details = {"message": f"{type(exc).__name__}: {exc}"[:MAX_QUOTE_CHARS]}
            if name in ("versions", "gpus"):
                check.stop_reason = f"stage {name} failed"
        check.recorder.write(
            {
                "event": "stage",
                "stage": {
                    "name": name,
                    "status": status,
                    "simulated": check.simulated,
                    "details": details,
                    "duration_s": round(time.monotonic() - start, 3),
                },
            }
        )
        if name == "gpus":
            # The context is final once the GPUs are known; the parent matches signatures with it.
            check.info("context", dict(check.context))
    check.info("context", dict(check.context))
    return 0


# ----------------------------------------------------------------------------- parent
def _child_environment(args: argparse.Namespace) -> dict:
    env = dict(os.environ)
    # The whole C++ log, and the dlopen failures that current TensorFlow logs only at VLOG(1).
    env["TF_CPP_MIN_LOG_LEVEL"] = "0"
    vmodule = [part for part in env.get("TF_CPP_VMODULE", "").split(",") if part]
    if not any(part.startswith("dso_loader=") for part in vmodule):
        vmodule.append("dso_loader=1")
    env["TF_CPP_VMODULE"] = ",".join(vmodule)
    env["PYTHONUNBUFFERED"] = "1"
    selection = parse_visible_devices(args.visible_devices)
    if selection is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(selection)
    return env


def _child_command(args: argparse.Namespace, results_path: str) -> list:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child-results",
        results_path,
        "--expected-gpus",
        str(args.expected_gpus),
        "--simulate-devices",
        str(args.simulate_devices),
        "--matmul-size",
        str(args.matmul_size),
    ]
    if args.visible_devices is not None:
        command += ["--visible-devices", args.visible_devices]
    return command


def _run_child(args: argparse.Namespace, workdir: str) -> tuple:
    """Run the TensorFlow side; returns (records, log lines, exit status, timed out)."""
    results_path = os.path.join(workdir, "results.jsonl")
    log_path = os.path.join(workdir, "tensorflow.log")
    timed_out = False
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            _child_command(args, results_path),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=_child_environment(args),
            start_new_session=True,
        )
        try:
            returncode = process.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(process.pid, signal.SIGKILL)
            returncode = process.wait()
    records = []
    if os.path.exists(results_path):
        with open(results_path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # a record cut short by a crash; the ones before it stand
    with open(log_path, encoding="utf-8", errors="replace") as handle:
        log_lines = handle.read().splitlines()
    return records, log_lines, returncode, timed_out


def _load_signatures(path: str | None) -> tuple:
    if path is None:
        candidate = os.path.join(os.path.dirname(os.path.abspath(__file__)), DEFAULT_SIGNATURES)
        if not os.path.exists(candidate):
            return [], {"path": None, "count": 0, "note": "no signatures file: log not diagnosed"}
        path = candidate
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    signatures = list(data.get("signatures") or [])
    return signatures, {"path": path, "count": len(signatures), "schema": data.get("schema")}


def _collect_stages(records: list, returncode: int, timed_out: bool, timeout: float) -> list:
    finished = {}
    for record in records:
        if record.get("event") == "stage":
            finished[record["stage"]["name"]] = record["stage"]
    simulated = any(stage.get("simulated") for stage in finished.values())
    stages = []
    died_in = None
    for name in STAGES:
        if name in finished:
            stages.append(finished[name])
            continue
        if died_in is None:  # the first stage without a result is where the child stopped
            died_in = name
            if timed_out:
                why = f"the check timed out after {timeout:g} s during this stage"
            elif returncode < 0:
                why = f"the check process was killed by signal {-returncode} during this stage"
            else:
                why = f"the check process ended (exit status {returncode}) during this stage"
            stages.append(
                {
                    "name": name,
                    "status": "fail",
                    "simulated": simulated,
                    "details": {"message": why + "; see the log"},
                    "duration_s": 0.0,
                }
            )
            continue
        stages.append(
            {
                "name": name,
                "status": "skip",
                "simulated": simulated,
                "details": {"message": f"not run: stage {died_in or '?'} did not finish"},
                "duration_s": 0.0,
            }
        )
    return stages


def _devices(info: dict, stages: list) -> list:
    devices = [dict(d) for d in info.get("devices") or []]
    matmul = next((s for s in stages if s["name"] == "matmul"), None)
    per_device = {}
    if matmul:
        per_device = {e.get("device"): e for e in matmul["details"].get("devices") or []}
    for device in devices:
        entry = per_device.get(device.get("name"))
        device["tflops"] = {
            key: (entry.get(key) or {}).get("tflops") if entry else None for key in ("fp32", "bf16")
        }
        device["matmul"] = entry.get("status") if entry else None
    return devices


def _summary(status: str, simulated: bool, stages: list, diagnoses: list) -> str:
    if status == "pass":
        messages = "; ".join(
            s["details"].get("message", "") for s in stages if s["name"] != "versions"
        )
        if simulated:
            return f"pass (simulated on logical CPU devices, no GPU verified): {messages}"
        return f"pass: {messages}"
    failed = next(s for s in stages if s["status"] != "pass")
    text = f"fail at stage {failed['name']}: {failed['details'].get('message', '')}"
    top = next((d for d in diagnoses if d["severity"] == "error"), None)
    if top:
        text += f". Cause: {top['cause']} Fix: {top['fix']}"
        if top["lines"]:
            text += f" Log: {top['lines'][0]}"
    return text


def build_document(
    args: argparse.Namespace,
    started_at: str,
    duration: float,
    records: list,
    log_lines: list,
    returncode: int,
    timed_out: bool,
) -> dict:
    signatures, signatures_info = _load_signatures(args.signatures)
    info = {r["key"]: r["value"] for r in records if r.get("event") == "info"}
    stages = _collect_stages(records, returncode, timed_out, args.timeout)
    simulated = any(stage["simulated"] for stage in stages)
    for stage in stages:
        # The versions stage runs before the devices are chosen: mark it like the rest.
        stage["simulated"] = simulated
    context = dict(info.get("context") or {})
    context.setdefault("tensorflow_imported", "versions" in info)
    context.setdefault("gpu_hardware_expected", args.expected_gpus > 0)
    context.setdefault("simulated", simulated)
    diagnoses = match_signatures(log_lines, signatures, context)
    status = "pass" if all(stage["status"] == "pass" for stage in stages) else "fail"
    failed = next((s["name"] for s in stages if s["status"] != "pass"), None)
    trimmed, truncated = trim_log(log_lines)
    return {
        "schema": SCHEMA,
        "script_version": SCRIPT_VERSION,
        "status": status,
        "simulated": simulated,
        "summary": _summary(status, simulated, stages, diagnoses),
        "failed_stage": failed,
        "host": socket.gethostname(),
        "started_at": started_at,
        "duration_s": round(duration, 3),
        "arguments": {
            "expected_gpus": args.expected_gpus,
            "simulate_devices": args.simulate_devices,
            "visible_devices": parse_visible_devices(args.visible_devices),
            "matmul_size": args.matmul_size,
            "timeout_s": args.timeout,
        },
        "versions": info.get("versions"),
        "build": info.get("build"),
        "devices": _devices(info, stages),
        "stages": stages,
        "context": context,
        "diagnoses": diagnoses,
        "signatures": signatures_info,
        "log": {
            "lines": trimmed,
            "total_lines": len(log_lines),
            "truncated": truncated,
            "exit_status": returncode,
            "timed_out": timed_out,
        },
    }


def _write_output(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tfgpu_verify.", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def main(argv: list | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        parse_visible_devices(args.visible_devices)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if args.child_results:
        return run_child(args)
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tfgpu-verify-") as workdir:
        records, log_lines, returncode, timed_out = _run_child(args, workdir)
    document = build_document(
        args, started_at, time.monotonic() - start, records, log_lines, returncode, timed_out
    )
    text = json.dumps(document, indent=2, sort_keys=False) + "\n"
    if args.output:
        _write_output(args.output, text)
    sys.stdout.write(text)
    return 0 if document["status"] == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
