#!/usr/bin/python
"""Ansible module tfgpu_probe: collect raw GPU/driver/host data, read-only.

Runs on the managed host with the Python standard library and ansible module_utils only.
It interprets nothing: tfgpu_provision.facts.host_facts_from_probe() turns the returned
``raw`` dict into host facts on the controller, where it is tested against real captures.
"""

DOCUMENTATION = r"""
---
module: tfgpu_probe
short_description: Collect raw NVIDIA GPU, driver and host data for the tfgpu preflight
description:
  - Read-only. Never changes the host and never fails because a tool is missing; a tool that
    is absent, times out or fails is reported as such in C(raw).
  - Collects C(lspci -nn -d 10de:), a sysfs scan of NVIDIA PCI functions, C(nvidia-smi -q -x)
    and a C(--query-gpu) CSV, C(/proc/driver/nvidia/version), the running kernel and whether
    its headers are installed, Secure Boot state, C(/etc/os-release), architecture, Python
    versions, dpkg/rpm lock holders, free disk space and loaded nvidia/nouveau modules.
  - Interpretation happens on the controller (C(tfgpu_provision.facts.host_facts_from_probe)).
options:
  disk_path:
    description:
      - Path whose free space is reported (where the environment will be installed). When it
        does not exist yet the nearest existing parent is measured.
    type: str
    default: /opt
  sysfs_root:
    description:
      - Root of sysfs to scan for PCI devices. Tests point it at a fake tree; when it is not
        C(/sys), lspci is not run, since it would describe the real machine instead.
    type: str
    default: /sys
  command_timeout:
    description: Seconds each external command may run before it is abandoned.
    type: int
    default: 30
attributes:
  check_mode:
    support: full
author:
  - tfgpu-provision
"""

EXAMPLES = r"""
- name: Probe GPUs and host state
  tfgpu_probe:
    disk_path: /opt/tfgpu
  register: __gpu_preflight_probe
"""

RETURN = r"""
raw:
  description: Raw collected data; see tfgpu_provision/facts.py for the keys it reads.
  returned: always
  type: dict
"""

# Ansible's module layout puts the documentation strings before the imports.
import glob  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

PROBE_VERSION = 1
NVIDIA_VENDOR = "0x10de"
SMI_CSV_FIELDS = [
    "index",
    "name",
    "pci.bus_id",
    "pci.device_id",
    "driver_version",
    "memory.total",
    "compute_cap",
    "mig.mode.current",
]
LOCK_FILES = ["/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock", "/var/lib/rpm/.rpm.lock"]
SECURE_BOOT_EFIVAR = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-e098032b8c4c"
SYSTEM_PYTHON = "/usr/bin/python3"
MAX_OUTPUT = 1024 * 1024  # an 8-GPU `nvidia-smi -q -x` is ~230 KB


def run(cmd, timeout):
    """Run a command without a shell; report rc/stdout/stderr or why it could not run."""
    result = {"cmd": cmd, "rc": None, "stdout": "", "stderr": "", "error": None}
    try:
        proc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
            env=dict(os.environ, LC_ALL="C"),
        )
    except subprocess.TimeoutExpired:
        result["error"] = f"timed out after {timeout}s"
        return result
    except OSError as exc:
        result["error"] = str(exc)
        return result
    result["rc"] = proc.returncode
    result["stdout"] = proc.stdout[:MAX_OUTPUT].decode("utf-8", "replace")
    result["stderr"] = proc.stderr[:MAX_OUTPUT].decode("utf-8", "replace")
    return result


def read_text(path, limit=MAX_OUTPUT):
    try:
        with open(path, "rb") as handle:
            return handle.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def collect_lspci(sysfs_root, timeout):
    if os.path.normpath(sysfs_root) != "/sys":
        return {"path": None, "skipped": "sysfs_root is overridden", "rc": None}
    path = shutil.which("lspci") or next(
        (p for p in ("/usr/bin/lspci", "/sbin/lspci", "/usr/sbin/lspci") if os.path.exists(p)),
        None,
    )
    if path is None:
        return {"path": None, "skipped": "lspci not installed", "rc": None}
    result = run([path, "-nn", "-D", "-d", "10de:"], timeout)
    result["path"] = path
    return result


def collect_sysfs(sysfs_root):
    base = os.path.join(sysfs_root, "bus", "pci", "devices")
    if not os.path.isdir(base):
        return {"root": sysfs_root, "devices": None, "error": f"{base} does not exist"}
    devices = []
    for entry in sorted(os.listdir(base)):
        folder = os.path.join(base, entry)
        vendor = (read_text(os.path.join(folder, "vendor"), 64) or "").strip()
        if vendor.lower() != NVIDIA_VENDOR:
            continue
        driver_link = os.path.join(folder, "driver")
        driver = None
        if os.path.islink(driver_link):
            driver = os.path.basename(os.readlink(driver_link))
        devices.append(
            {
                "address": entry,
                "vendor": vendor,
                "device": (read_text(os.path.join(folder, "device"), 64) or "").strip(),
                "class": (read_text(os.path.join(folder, "class"), 64) or "").strip(),
                "driver": driver,
            }
        )
    return {"root": sysfs_root, "devices": devices, "error": None}


def collect_nvidia_smi(timeout):
    path = shutil.which("nvidia-smi") or (
        "/usr/bin/nvidia-smi" if os.path.exists("/usr/bin/nvidia-smi") else None
    )
    if path is None:
        return {"path": None, "xml": None, "csv": None}
    xml = run([path, "-q", "-x"], timeout)
    fields = list(SMI_CSV_FIELDS)
    csv = run([path, "--query-gpu=" + ",".join(fields), "--format=csv"], timeout)
    # Drivers older than the compute_cap field reject the whole query: ask again without it.
    if csv["rc"] not in (0, None) and "not a valid field" in csv["stdout"] + csv["stderr"]:
        fields.remove("compute_cap")
        csv = run([path, "--query-gpu=" + ",".join(fields), "--format=csv"], timeout)
    return {"path": path, "xml": xml, "csv": csv}


def collect_kernel():
    release = platform.release()
    build_dir = f"/lib/modules/{release}/build"
    # exists() follows the symlink: a build link left behind by removed headers is "no headers"
    return {"release": release, "build_dir": build_dir, "headers": os.path.exists(build_dir)}


def collect_secure_boot(timeout):
    mokutil = shutil.which("mokutil")
    efivar = None
    data = None
    try:
        with open(SECURE_BOOT_EFIVAR, "rb") as handle:
            data = handle.read(16)
    except OSError:
        pass
    if data and len(data) >= 5:
        efivar = data[4]  # 4 bytes of attributes, then the value byte
    return {
        "mokutil": run([mokutil, "--sb-state"], timeout) if mokutil else None,
        "efi": os.path.isdir("/sys/firmware/efi"),
        "efivar": efivar,
    }


def collect_python(timeout):
    info = {
        "version": platform.python_version(),
        "executable": sys.executable,
        "system_python3": None,
    }
    if os.path.exists(SYSTEM_PYTHON) and os.path.realpath(SYSTEM_PYTHON) != os.path.realpath(
        sys.executable
    ):
        result = run(
            [SYSTEM_PYTHON, "-c", "import platform; print(platform.python_version())"], timeout
        )
        version = result["stdout"].strip() if result["rc"] == 0 else None
        info["system_python3"] = {"path": SYSTEM_PYTHON, "version": version}
    return info


def process_command(pid):
    text = read_text(f"/proc/{pid}/comm", 256)
    return text.strip() if text else None


def collect_locks(timeout):
    present = [path for path in LOCK_FILES if os.path.exists(path)]
    holders = []
    fuser = shutil.which("fuser") or (
        "/usr/bin/fuser" if os.path.exists("/usr/bin/fuser") else None
    )
    if fuser:
        method = "fuser"
        for path in present:
            # fuser prints the pids on stdout and the file name on stderr; rc 1 means no user
            result = run([fuser, path], timeout)
            for token in result["stdout"].split():
                digits = "".join(ch for ch in token if ch.isdigit())
                if digits:
                    pid = int(digits)
                    holders.append({"path": path, "pid": pid, "command": process_command(pid)})
    else:
        method = "procfs"
        wanted = {os.path.realpath(path): path for path in present}
        for fd in glob.glob("/proc/[0-9]*/fd/*") if wanted else []:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target in wanted:
                pid = int(fd.split("/")[2])
                holders.append(
                    {"path": wanted[target], "pid": pid, "command": process_command(pid)}
                )
    return {"method": method, "checked": present, "holders": holders}


def nearest_existing(path):
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def collect_disk(disk_path):
    def usage(path):
        try:
            return shutil.disk_usage(path).free
        except OSError:
            return None

    target = nearest_existing(disk_path)
    return {
        "root": {"path": "/", "free_bytes": usage("/")},
        "target": {"requested": disk_path, "path": target, "free_bytes": usage(target)},
    }


def collect_modules():
    text = read_text("/proc/modules")
    if text is None:
        return None
    names = [line.split(" ", 1)[0] for line in text.splitlines() if line]
    return [name for name in names if name.startswith(("nvidia", "nouveau"))]


# Installed layers, for plan's "current" column: package names of every install source.
DPKG_PATTERNS = (
    "nvidia-driver*",
    "cuda-drivers*",
    "libcuda1",
    "cuda-toolkit-*",
    "nvidia-cuda-toolkit",
    "cudnn*",
    "libcudnn*",
)


def collect_installed(timeout, env_root):
    """Installed driver/CUDA/cuDNN packages, toolkit trees and tfgpu envs (read-only)."""
    packages = None
    dpkg_query = shutil.which("dpkg-query")
    if dpkg_query:
        result = run(
            [
                dpkg_query,
                "-W",
                "-f",
                "${Package}\t${Version}\t${db:Status-Abbrev}\n",
                *DPKG_PATTERNS,
            ],
            timeout,
        )
        packages = []
        for line in result["stdout"].splitlines():
            parts = line.split("\t")
            if len(parts) == 3 and parts[2].startswith("ii"):
                packages.append({"name": parts[0], "version": parts[1]})
    toolkits = []
    for version_file in sorted(glob.glob("/usr/local/cuda-*/version.json")):
        toolkits.append(
            {"path": os.path.dirname(version_file), "version_json": read_text(version_file)}
        )
    envs = []
    for state in sorted(glob.glob(os.path.join(env_root, "*", ".tfgpu-env.json"))):
        envs.append({"path": os.path.dirname(state), "state": read_text(state)})
    return {"packages": packages, "cuda_toolkits": toolkits, "tf_envs": envs}


def probe(params):
    timeout = params["command_timeout"]
    return {
        "probe_version": PROBE_VERSION,
        "lspci": collect_lspci(params["sysfs_root"], timeout),
        "sysfs_pci": collect_sysfs(params["sysfs_root"]),
        "nvidia_smi": collect_nvidia_smi(timeout),
        "proc_driver_version": read_text("/proc/driver/nvidia/version"),
        "kernel": collect_kernel(),
        "secure_boot": collect_secure_boot(timeout),
        "os_release": read_text("/etc/os-release") or read_text("/usr/lib/os-release"),
        "arch": platform.machine(),
        "python": collect_python(timeout),
        "locks": collect_locks(timeout),
        "disk": collect_disk(params["disk_path"]),
        "proc_modules": collect_modules(),
        "installed": collect_installed(timeout, params["env_root"]),
    }


def main():
    module = AnsibleModule(
        argument_spec={
            "disk_path": {"type": "str", "default": "/opt"},
            "sysfs_root": {"type": "str", "default": "/sys"},
            "command_timeout": {"type": "int", "default": 30},
            "env_root": {"type": "str", "default": "/opt/tfgpu/envs"},
        },
        supports_check_mode=True,
    )
    module.exit_json(changed=False, raw=probe(module.params))


if __name__ == "__main__":
    main()
