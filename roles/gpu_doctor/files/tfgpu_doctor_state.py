#!/usr/bin/env python3
"""Collect the system state the doctor correlates; read-only, prints one JSON document.

Raw data only (file contents, command outputs, exit codes); the controller interprets it
(tfgpu_provision.doctor.evidence). Standard library only, Python 3.8+.
"""

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys

SCHEMA = "tfgpu-provision/doctor-state/1"
MAX_TEXT = 256 * 1024
# Kernel log lines worth keeping: the NVIDIA module (NVRM, Xid), nouveau, module signing.
KERNEL_LINE = re.compile(
    r"NVRM|Xid|nvidia|nouveau|Lockdown|Key was rejected|module verification failed|"
    r"PKCS#7 signature",
    re.IGNORECASE,
)
LIBCUDA_GLOBS = (
    "/usr/lib/x86_64-linux-gnu/libcuda.so.*",
    "/usr/lib/aarch64-linux-gnu/libcuda.so.*",
    "/usr/lib64/libcuda.so.*",
    "/usr/lib/libcuda.so.*",
    "/usr/lib/x86_64-linux-gnu/nvidia/current/libcuda.so.*",
)
MODPROBE_DIRS = ("/etc/modprobe.d", "/lib/modprobe.d", "/usr/lib/modprobe.d", "/run/modprobe.d")


def run(cmd, timeout=20):
    exe = shutil.which(cmd[0])
    if exe is None:
        for folder in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
            if os.path.exists(os.path.join(folder, cmd[0])):
                exe = os.path.join(folder, cmd[0])
                break
    if exe is None:
        return {"cmd": cmd, "rc": None, "stdout": "", "stderr": "", "error": "not installed"}
    try:
        proc = subprocess.run(
            [exe, *cmd[1:]],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            env=dict(os.environ, LC_ALL="C"),
        )
    except subprocess.TimeoutExpired:
        return {"cmd": cmd, "rc": None, "stdout": "", "stderr": "", "error": "timed out"}
    except OSError as exc:
        return {"cmd": cmd, "rc": None, "stdout": "", "stderr": "", "error": str(exc)}
    return {
        "cmd": cmd,
        "rc": proc.returncode,
        "stdout": proc.stdout[:MAX_TEXT].decode("utf-8", "replace"),
        "stderr": proc.stderr[:MAX_TEXT].decode("utf-8", "replace"),
        "error": None,
    }


def read(path, limit=MAX_TEXT):
    try:
        with open(path, "rb") as handle:
            return handle.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def modules():
    text = read("/proc/modules")
    if text is None:
        return None
    names = [line.split(" ", 1)[0] for line in text.splitlines() if line]
    return sorted(n for n in names if n.startswith(("nvidia", "nouveau")))


def wrapper(path):
    """The env wrapper and the CUDA_VISIBLE_DEVICES it sets, if any."""
    text = read(path)
    info = {"path": path, "exists": text is not None, "cuda_visible_devices": None}
    if text:
        for line in text.splitlines():
            match = re.match(r"\s*(?:export\s+)?CUDA_VISIBLE_DEVICES=(['\"]?)([^'\"\s]*)\1", line)
            if match and not line.lstrip().startswith("#"):
                info["cuda_visible_devices"] = match.group(2)
    return info


def modprobe_blacklists():
    found = []
    for folder in MODPROBE_DIRS:
        for path in sorted(glob.glob(os.path.join(folder, "*.conf"))):
            for line in (read(path) or "").splitlines():
                words = line.split()
                if (
                    len(words) >= 2
                    and words[0] == "blacklist"
                    and words[1] in ("nouveau", "nvidia")
                ):
                    found.append({"file": path, "module": words[1]})
    return found


def kernel_log():
    result = run(["dmesg"])
    if result["rc"] != 0:
        reason = (result["stderr"] or result["error"] or "dmesg failed").strip()
        return {
            "readable": False,
            "reason": reason.splitlines()[0] if reason else None,
            "lines": [],
        }
    lines = [line for line in result["stdout"].splitlines() if KERNEL_LINE.search(line)]
    return {"readable": True, "reason": None, "lines": lines[-200:]}


def systemd_unit(name):
    active = run(["systemctl", "is-active", name])
    enabled = run(["systemctl", "is-enabled", name])
    return {
        "active": (active["stdout"].strip() or active["stderr"].strip() or active["error"]),
        "enabled": (enabled["stdout"].strip() or enabled["stderr"].strip() or enabled["error"]),
        "active_rc": active["rc"],
    }


def persistence_mode():
    result = run(["nvidia-smi", "--query-gpu=index,persistence_mode", "--format=csv,noheader"])
    if result["rc"] != 0:
        return None
    modes = []
    for line in result["stdout"].splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit():
            modes.append({"index": int(parts[0]), "mode": parts[1]})
    return modes


def collect(wrapper_path):
    return {
        "schema": SCHEMA,
        "proc_driver_nvidia": os.path.isdir("/proc/driver/nvidia"),
        "proc_driver_version": read("/proc/driver/nvidia/version"),
        "modules": modules(),
        "modinfo_nvidia": run(["modinfo", "-F", "version", "nvidia"]),
        "modinfo_nvidia_signer": run(["modinfo", "-F", "signer", "nvidia"]),
        "dkms_status": run(["dkms", "status"]),
        "libcuda_files": sorted({p for g in LIBCUDA_GLOBS for p in glob.glob(g)}),
        "modprobe_blacklists": modprobe_blacklists(),
        "env_wrapper": wrapper(wrapper_path),
        "session_cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "etc_environment_cuda_visible_devices": wrapper("/etc/environment")["cuda_visible_devices"],
        "persistence_mode": persistence_mode(),
        "fabricmanager": systemd_unit("nvidia-fabricmanager"),
        "kernel_log": kernel_log(),
        "kernel_release": os.uname().release,
        "dev_nvidia": sorted(glob.glob("/dev/nvidia*")),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description="Collect GPU-related system state as JSON.")
    parser.add_argument("--wrapper", default="/usr/local/bin/tfgpu-env")
    args = parser.parse_args(argv)
    print(json.dumps(collect(args.wrapper), indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
