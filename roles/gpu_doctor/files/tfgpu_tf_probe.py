#!/usr/bin/env python3
"""TensorFlow's own view of the GPU stack, run with the env's Python; prints one JSON document.

The parent process starts a child Python with TensorFlow's loader logging switched on
(TF_CPP_VMODULE for dso_loader, see the reference notes) and captures its stderr, so that a
TensorFlow that crashes or hangs on import is still reported, with its log. The child prints
its findings as JSON on stdout: version, build info, GPUs seen, the CUDA libraries that were
really loaded (/proc/self/maps), the nvidia-* pip packages and a tiny GPU convolution (which
initialises cuDNN). Read-only; standard library only outside the child.
"""

import argparse
import json
import os
import re
import subprocess
import sys

SCHEMA = "tfgpu-provision/tf-probe/1"
LOG_LINES_KEPT = 400

CHILD = r"""
import json, os, sys
out = {"errors": []}
try:
    import tensorflow as tf
except Exception as exc:  # noqa: BLE001 - report any import failure
    out["import_error"] = "%s: %s" % (type(exc).__name__, exc)
    print("@@TFGPU@@" + json.dumps(out))
    sys.exit(0)
out["version"] = tf.__version__
try:
    out["built_with_cuda"] = bool(tf.test.is_built_with_cuda())
except Exception as exc:  # noqa: BLE001
    out["errors"].append("is_built_with_cuda: %s" % exc)
try:
    info = dict(tf.sysconfig.get_build_info())
    out["build_info"] = {
        k: (list(v) if isinstance(v, (list, tuple)) else v)
        for k, v in info.items()
        if isinstance(v, (str, int, float, bool, list, tuple))
    }
except Exception as exc:  # noqa: BLE001
    out["errors"].append("get_build_info: %s" % exc)
gpus = []
try:
    gpus = tf.config.list_physical_devices("GPU")
except Exception as exc:  # noqa: BLE001
    out["errors"].append("list_physical_devices: %s" % exc)
details = []
for dev in gpus:
    try:
        d = tf.config.experimental.get_device_details(dev)
        cc = d.get("compute_capability")
        details.append({"name": dev.name, "device_name": d.get("device_name"),
                        "compute_capability": "%d.%d" % tuple(cc) if cc else None})
    except Exception as exc:  # noqa: BLE001
        details.append({"name": dev.name, "error": str(exc)})
out["gpus"] = details
if gpus:
    try:
        with tf.device("/GPU:0"):
            x = tf.ones([1, 8, 8, 1])
            k = tf.ones([3, 3, 1, 1])
            y = tf.nn.conv2d(x, k, strides=1, padding="SAME")
            out["gpu_conv_ok"] = float(tf.reduce_sum(y).numpy()) > 0
            out["gpu_conv_device"] = y.device
    except Exception as exc:  # noqa: BLE001
        out["gpu_conv_ok"] = False
        out["gpu_conv_error"] = "%s: %s" % (type(exc).__name__, str(exc)[:2000])
libs = set()
try:
    with open("/proc/self/maps") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 6 and any(s in parts[5] for s in
                                       ("libcu", "libcudnn", "libnccl", "libnvrtc", "libnvJit")):
                libs.add(parts[5])
except OSError:
    pass
out["loaded_libraries"] = sorted(libs)
pkgs = {}
try:
    from importlib import metadata
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name.startswith("nvidia-") or name.startswith("tensorflow") or name in ("tf-nightly",):
            pkgs[name] = dist.version
except Exception as exc:  # noqa: BLE001
    out["errors"].append("importlib.metadata: %s" % exc)
out["packages"] = pkgs
cudnn = [p for p in libs if "libcudnn.so" in os.path.basename(p)]
if cudnn:
    try:
        import ctypes
        v = int(ctypes.CDLL(sorted(cudnn)[0]).cudnnGetVersion())
        major = v // 10000 if v >= 10000 else v // 1000
        rest = v % 10000 if v >= 10000 else v % 1000
        out["cudnn_runtime_version"] = "%d.%d.%d" % (major, rest // 100, rest % 100)
    except Exception as exc:  # noqa: BLE001
        out["errors"].append("cudnnGetVersion: %s" % exc)
out["environment"] = {k: os.environ.get(k) for k in
                      ("CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH", "XLA_FLAGS", "TF_CPP_VMODULE")}
print("@@TFGPU@@" + json.dumps(out))
"""

# dso_loader lines give which libraries loaded and which did not (evidence, not diagnosis).
OPENED = re.compile(r"Successfully opened (?:dynamic|CUDA) library (\S+)")
NOT_LOADED = re.compile(r"Could not load dynamic library '([^']+)'; dlerror: ([^;]*)")


def library_status(lines):
    status = {}
    for line in lines:
        match = OPENED.search(line)
        if match:
            status[match.group(1)] = {"loaded": True, "error": None}
            continue
        match = NOT_LOADED.search(line)
        if match:
            status[match.group(1)] = {"loaded": False, "error": match.group(2).strip()}
    return status


def main(argv=None):
    parser = argparse.ArgumentParser(description="TensorFlow GPU introspection as JSON.")
    parser.add_argument("--timeout", type=int, default=300)
    args = parser.parse_args(argv)
    env = dict(os.environ)
    env.setdefault("TF_CPP_VMODULE", "dso_loader=2,cuda_dso_loader=2,cuda_diagnostics=1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
    doc = {"schema": SCHEMA, "python": sys.executable, "timed_out": False, "rc": None}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=env,
            timeout=args.timeout,
        )
        stdout = proc.stdout.decode("utf-8", "replace")
        stderr = proc.stderr.decode("utf-8", "replace")
        doc["rc"] = proc.returncode
    except subprocess.TimeoutExpired as exc:
        doc["timed_out"] = True
        stdout = (exc.stdout or b"").decode("utf-8", "replace")
        stderr = (exc.stderr or b"").decode("utf-8", "replace")
    result = None
    for line in stdout.splitlines():
        if line.startswith("@@TFGPU@@"):
            result = json.loads(line[len("@@TFGPU@@") :])
    lines = [line for line in stderr.splitlines() if line.strip()]
    doc["result"] = result
    doc["libraries"] = library_status(lines)
    doc["log"] = lines[-LOG_LINES_KEPT:]
    doc["log_truncated"] = len(lines) > LOG_LINES_KEPT
    print(json.dumps(doc, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
