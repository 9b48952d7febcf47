"""A lab: named set of sandbox nodes with one state directory, one SSH key, one inventory.

``~/.cache/tfgpu-provision/sandbox/<lab>/`` holds ``state.json``, the client key
``id_ed25519``, ``inventory.yml`` and one directory per node (scripts, overlay layers, logs).
``down`` removes the whole directory; the root filesystem cache is shared and stays.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfgpu_provision.errors import BadInput, TfgpuError
from tfgpu_provision.sandbox import node as nodes
from tfgpu_provision.sandbox import rootfs
from tfgpu_provision.sandbox.rootfs import BOOT_ID_FILE, REBOOT_COMMAND, cache_root

Progress = Callable[[str], None]

DEFAULT_LAB = "sandbox"
MAX_HOSTS = 32
BOOT_TIMEOUT_S = 30.0
PROC_FILESYSTEMS = Path("/proc/filesystems")
# Where debootstrap lives when sbin is not on a non-login root's PATH.
DEBOOTSTRAP_PATHS = (Path("/usr/sbin/debootstrap"),)
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
_TOOLS = {
    "unshare": "apt-get install util-linux",
    "chroot": "apt-get install coreutils",
    "setsid": "apt-get install util-linux",
    "mount": "apt-get install mount",
    "ssh": "apt-get install openssh-client",
    "ssh-keygen": "apt-get install openssh-client",
}


def labs_root() -> Path:
    return cache_root() / "sandbox"


def lab_dir(name: str) -> Path:
    return labs_root() / name


def inventory_path(name: str) -> Path:
    """Where ``--inventory <lab>`` resolves to; other modules rely on this exact location."""
    return lab_dir(name) / "inventory.yml"


@dataclass
class LabNode:
    name: str
    port: int
    files: nodes.NodeFiles

    @property
    def state(self) -> str:
        """running, booting, failed, stopped or dead (its supervisor is gone unasked)."""
        if nodes.supervisor_pid(self.files) is None:
            if self.files.failed_file.exists():
                return "failed"
            return "stopped" if self.files.stop_file.exists() else "dead"
        if nodes.init_pid(self.files) is not None and nodes.ssh_banner(self.port):
            return "running"
        return "booting"


@dataclass
class Lab:
    name: str
    suite: str
    rootfs: Path
    simulate_gpus: int
    nodes: list[LabNode] = field(default_factory=list)

    @property
    def dir(self) -> Path:
        return lab_dir(self.name)

    @property
    def key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def inventory(self) -> Path:
        return inventory_path(self.name)

    def node(self, host: str) -> LabNode:
        wanted = host if host.startswith(f"{self.name}-") else f"{self.name}-{host}"
        for item in self.nodes:
            if item.name == wanted:
                return item
        known = ", ".join(n.name for n in self.nodes)
        raise BadInput(f"lab {self.name!r} has no host {host!r}; its hosts: {known}")

    def ssh_argv(self, host: str, command: list[str] | None = None) -> list[str]:
        item = self.node(host)
        argv = [
            "ssh",
            "-i", str(self.key),
            "-p", str(item.port),
            "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR",
            "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=10",
            "root@127.0.0.1",
        ]  # fmt: skip
        return argv + list(command or [])

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "suite": self.suite,
            "rootfs": str(self.rootfs),
            "simulate_gpus": self.simulate_gpus,
            "nodes": [{"name": n.name, "port": n.port} for n in self.nodes],
        }

    @classmethod
    def load(cls, name: str) -> Lab:
        path = lab_dir(name) / "state.json"
        try:
            data = json.loads(path.read_text())
            lab = cls(
                name=data["name"],
                suite=data["suite"],
                rootfs=Path(data["rootfs"]),
                simulate_gpus=int(data["simulate_gpus"]),
            )
            lab.nodes = [
                LabNode(n["name"], int(n["port"]), nodes.NodeFiles(n["name"], lab.dir / n["name"]))
                for n in data["nodes"]
            ]
        except FileNotFoundError:
            raise BadInput(
                f"no sandbox lab named {name!r}", fix="start one with `tfgpu-provision sandbox up`."
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BadInput(
                f"sandbox lab {name!r} has an unreadable state file {path} ({exc})",
                fix=f"run `tfgpu-provision sandbox down --name {name}` and start it again.",
            ) from None
        return lab

    def save(self) -> None:
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        tmp.rename(self.dir / "state.json")


# ---- checks ----------------------------------------------------------------------------


def check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise BadInput(
            f"bad lab name {name!r}: use lowercase letters, digits and '-', starting with a "
            "letter, at most 40 characters (it prefixes host names)"
        )


def check_host_support() -> None:
    """Raise BadInput naming the fix when this machine cannot run sandbox nodes."""
    if os.geteuid() != 0:
        raise BadInput(
            "the sandbox needs root (it mounts overlay filesystems and creates namespaces)",
            fix="run it as root, e.g. `sudo tfgpu-provision sandbox up`.",
        )
    try:
        filesystems = PROC_FILESYSTEMS.read_text()
    except OSError:
        filesystems = ""
    if not re.search(r"\boverlay$", filesystems, re.MULTILINE):
        raise BadInput(
            "this kernel has no overlay filesystem support (not in /proc/filesystems)",
            fix="load it with `modprobe overlay`, or use a kernel with CONFIG_OVERLAY_FS.",
        )
    if shutil.which("debootstrap") is None and not any(p.exists() for p in DEBOOTSTRAP_PATHS):
        raise BadInput(
            "debootstrap is not installed; the sandbox builds its Debian root filesystem with it",
            fix="run `make system-deps` (or `apt-get install debootstrap`).",
        )
    for tool, fix in _TOOLS.items():
        if shutil.which(tool) is None:
            raise BadInput(f"{tool} is not installed", fix=f"run `{fix}`.")


def _lock_path(name: str) -> Path:
    # Beside the lab's directory, not in it: `down` deletes the directory under the lock.
    return labs_root() / f".{name}.lock"


@contextlib.contextmanager
def _lab_lock(name: str) -> Iterator[None]:
    """Serialise up/down of one lab (parallel Molecule scenarios may share a name)."""
    labs_root().mkdir(parents=True, exist_ok=True)
    with _lock_path(name).open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---- cleanup ---------------------------------------------------------------------------


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1].encode().decode("unicode_escape")
        if target.startswith(prefix) or target == str(path):
            found.append(target)
    return found


def _unmount_under(path: Path) -> None:
    # Deepest first; lazy so that a busy mount does not block the rest.
    for target in sorted(_mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)
    left = _mounts_under(path)
    if left:
        raise TfgpuError(f"could not unmount {', '.join(left)}", fix="unmount them by hand.")


def _stop(directory: Path, progress: Progress) -> None:
    """Stop everything a lab directory runs and unmount whatever it left mounted."""
    for stop_file in directory.glob("*/supervise.sh"):
        (stop_file.parent / "stop").touch()
    left = nodes.stop_processes(directory)
    if left:
        raise TfgpuError(
            f"processes of {directory} would not end: {sorted(left)}",
            fix=f"kill them (kill -9 {' '.join(map(str, sorted(left)))}) and run down again.",
        )
    _unmount_under(directory)


# ---- lifecycle ---------------------------------------------------------------------------


def _wait_booted(lab: Lab) -> None:
    started = time.monotonic()
    waiting = list(lab.nodes)
    while waiting:
        elapsed = time.monotonic() - started
        for item in list(waiting):
            if nodes.ssh_banner(item.port, timeout=0.2):
                waiting.remove(item)
            elif item.files.failed_file.exists() or (
                # The supervisor writes its pid file at once; give it a moment to appear.
                elapsed > 2 and nodes.supervisor_pid(item.files) is None
            ):
                raise _boot_failure(lab, item)
        if waiting and elapsed > BOOT_TIMEOUT_S:
            raise _boot_failure(lab, waiting[0], timed_out=True)
        if waiting:
            time.sleep(0.05)


def _check_logins(lab: Lab) -> None:
    """Log in to every host once, in parallel: a listening sshd does not prove the key works."""
    procs = {
        item.name: subprocess.Popen(
            lab.ssh_argv(item.name, ["true"]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for item in lab.nodes
    }
    for host, proc in procs.items():
        _, err = proc.communicate(timeout=30)
        if proc.returncode != 0:
            raise TfgpuError(
                f"cannot log in to sandbox host {host} as root with {lab.key}: {err.strip()}",
                fix=f"run `tfgpu-provision sandbox down --name {lab.name}` and try again.",
            )


def _boot_failure(lab: Lab, item: LabNode, timed_out: bool = False) -> TfgpuError:
    try:
        tail = item.files.log.read_text(errors="replace").splitlines()[-8:]
    except OSError:
        tail = []
    why = (
        f"did not answer on port {item.port} within {BOOT_TIMEOUT_S:.0f} s"
        if timed_out
        else "failed to boot"
    )
    return TfgpuError(
        f"sandbox host {item.name} {why}; log {item.files.log}:\n" + "\n".join(tail),
        fix=f"run `tfgpu-provision sandbox down --name {lab.name}` and try again.",
    )


def render_inventory(lab: Lab) -> str:
    """The lab's Ansible inventory. JSON strings are valid YAML scalars, hence json.dumps."""
    q = json.dumps
    ssh_args = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
    lines = [
        f"# Written by `tfgpu-provision sandbox up --name {lab.name}`; removed by `sandbox down`.",
        f"# Use it with `--inventory {lab.name}`.",
        "all:",
        "  children:",
        "    gpu_nodes:",
        "      hosts:",
    ]
    for item in lab.nodes:
        lines += [
            f"        {item.name}:",
            "          ansible_host: 127.0.0.1",
            f"          ansible_port: {item.port}",
            "          ansible_user: root",
            f"          ansible_ssh_private_key_file: {q(str(lab.key))}",
            f"          ansible_ssh_common_args: {q(ssh_args)}",
            "          ansible_python_interpreter: /usr/bin/python3",
        ]
    lines += [
        "      vars:",
        "        tfgpu_sandbox: true",
        f"        tfgpu_simulate_gpus: {lab.simulate_gpus}",
        "        # conda channels are unreachable from this machine, so sandbox hosts build",
        "        # TensorFlow environments with venv + pip.",
        "        tfgpu_env_manager: venv",
        "        # Nodes have no kernel of their own: roles reboot them with these commands.",
        f"        tfgpu_sandbox_reboot_command: {q(REBOOT_COMMAND)}",
        f"        tfgpu_sandbox_boot_time_command: {q('cat ' + BOOT_ID_FILE)}",
    ]
    return "\n".join(lines) + "\n"


def _healthy(lab: Lab) -> bool:
    return all(item.state == "running" for item in lab.nodes)


def up(
    name: str = DEFAULT_LAB,
    hosts: int = 2,
    suite: str = "bookworm",
    simulate_gpus: int = 0,
    mirror: str | None = None,
    progress: Progress = print,
) -> Lab:
    """Bring lab ``name`` up with ``hosts`` nodes; recover it if a crash left it half up."""
    check_name(name)
    if not 1 <= hosts <= MAX_HOSTS:
        raise BadInput(f"--hosts must be between 1 and {MAX_HOSTS}, not {hosts}")
    if not 0 <= simulate_gpus <= 16:
        raise BadInput(f"--simulate-gpus must be between 0 and 16, not {simulate_gpus}")
    if suite not in rootfs.SUITES:
        raise BadInput(f"unknown suite {suite!r}; choose one of {', '.join(rootfs.SUITES)}")
    check_host_support()
    with _lab_lock(name):
        return _up_locked(name, hosts, suite, simulate_gpus, mirror, progress)


def _up_locked(
    name: str, hosts: int, suite: str, simulate_gpus: int, mirror: str | None, progress: Progress
) -> Lab:
    directory = lab_dir(name)
    previous: Lab | None = None
    if directory.exists():
        try:
            previous = Lab.load(name)
        except BadInput:
            previous = None
        if previous is not None and (len(previous.nodes), previous.suite) != (hosts, suite):
            raise BadInput(
                f"lab {name!r} already exists with {len(previous.nodes)} {previous.suite} "
                f"host(s); asked for {hosts} {suite}",
                fix=f"run `tfgpu-provision sandbox down --name {name}` first, or pick --name.",
            )
        if previous is not None and _healthy(previous):
            if previous.simulate_gpus != simulate_gpus:
                previous.simulate_gpus = simulate_gpus
                previous.save()
                previous.inventory.write_text(render_inventory(previous))
            progress(f"lab {name} is already up ({hosts} host(s)); inventory: {previous.inventory}")
            return previous
        progress(f"lab {name}: cleaning up after an unclean stop (leftover processes, mounts)")
        _stop(directory, progress)
        if previous is None or not previous.rootfs.is_dir():
            progress(f"lab {name}: its state is unusable; starting it afresh")
            shutil.rmtree(directory)
            previous = None

    if previous is not None:
        # Overlays stay on the tree they were made on, even if the recipe has moved on.
        base = previous.rootfs
    else:
        base = rootfs.ensure_rootfs(rootfs.make_recipe(suite, mirror), progress)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    started = time.monotonic()

    lab = Lab(name=name, suite=suite, rootfs=base, simulate_gpus=simulate_gpus)
    if not lab.key.exists():
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"tfgpu-sandbox-{name}",
                "-f",
                str(lab.key),
            ],
            check=True,
            stdin=subprocess.DEVNULL,
        )
    pub = lab.key.with_suffix(".pub").read_text()
    old_ports = {n.name: n.port for n in previous.nodes} if previous else {}
    fresh = iter(nodes.free_ports(hosts))
    for index in range(1, hosts + 1):
        host = f"{name}-{index}"
        port = old_ports.get(host, 0)
        if not port or not nodes.port_free(port):
            port = next(fresh)
        lab.nodes.append(LabNode(host, port, nodes.NodeFiles(host, directory / host)))
    lab.save()

    verb = "restarting" if previous else "starting"
    progress(
        f"lab {name}: {verb} {hosts} {suite} host(s) on ports "
        f"{', '.join(str(n.port) for n in lab.nodes)}"
    )
    for item in lab.nodes:
        nodes.prepare(item.files, base, item.port, pub)
        nodes.start(item.files)
    _wait_booted(lab)
    _check_logins(lab)
    lab.inventory.write_text(render_inventory(lab))
    progress(f"lab {name} up in {time.monotonic() - started:.1f} s; inventory: {lab.inventory}")
    return lab


def status(name: str = DEFAULT_LAB) -> Lab:
    check_name(name)
    return Lab.load(name)


def down(name: str = DEFAULT_LAB, progress: Progress = print) -> None:
    check_name(name)
    directory = lab_dir(name)
    if not directory.exists():
        raise BadInput(f"no sandbox lab named {name!r}", fix="`tfgpu-provision sandbox status`")
    if os.geteuid() != 0:
        raise BadInput("stopping a sandbox lab needs root", fix="run it with sudo.")
    with _lab_lock(name):
        _stop(directory, progress)
        shutil.rmtree(directory)
        _lock_path(name).unlink(missing_ok=True)
    progress(f"lab {name} is down; nothing of it is left running or mounted")


def lab_of_host(host: str) -> str | None:
    """The existing lab a host name like ``LAB-N`` belongs to, if any."""
    match = re.match(r"^(.+)-\d+$", host)
    if match and (lab_dir(match.group(1)) / "state.json").is_file():
        return match.group(1)
    return None


def list_labs() -> list[str]:
    root = labs_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir())


def down_all(progress: Progress = print) -> list[str]:
    names = list_labs()
    for name in names:
        down(name, progress)
    for stale in labs_root().glob(".*.lock"):
        stale.unlink(missing_ok=True)
    if not names:
        progress("no sandbox labs to stop")
    return names
