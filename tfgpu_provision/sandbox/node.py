"""One sandbox node: its files on the controller, its boot and supervisor scripts, its processes.

Process tree of a running node (``sandbox status`` shows the PIDs)::

    sh supervise.sh                     session leader, survives the CLI, ignores HUP
     └─ unshare --mount --pid --uts --ipc --fork --kill-child sh boot.sh
         └─ sshd -D  (PID 1 of the node; boot.sh mounted the overlay and exec'd it)

The supervisor is a shell script rather than Python so an idle node stays a few MB. A reboot
inside the node ends sshd, hence the namespace; the loop boots a fresh one until ``down``
creates the ``stop`` file.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tfgpu_provision.sandbox.rootfs import BOOT_ID_FILE

HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"

SUPERVISE_SH = """#!/bin/sh
# Supervisor of tfgpu-provision sandbox node {name}: boots its namespace, boots it again when it
# ends (a reboot from inside), and stops once `sandbox down` has created the stop file.
trap '' HUP
node_dir={node_dir}
echo $$ > "$node_dir/supervisor.pid"
fast_exits=0
while [ ! -e "$node_dir/stop" ]; do
    started=$(date +%s)
    unshare --mount --pid --uts --ipc --fork --propagation private --kill-child \\
        sh "$node_dir/boot.sh"
    rc=$?
    [ -e "$node_dir/stop" ] && break
    if [ $(( $(date +%s) - started )) -lt 3 ]; then
        fast_exits=$((fast_exits + 1))
    else
        fast_exits=0
    fi
    if [ "$fast_exits" -ge 5 ]; then
        echo "$(date -Is) {name}: node exited 5 times within 3 s of booting (last exit $rc);" \\
            "giving up" >&2
        echo "$rc" > "$node_dir/failed"
        break
    fi
    echo "$(date -Is) {name}: node exited ($rc); booting it again" >&2
    # A boot that failed at once (the old namespace still holding the port or the overlay
    # while it is torn down on a loaded machine) is retried after 1, 2, 3, 4 s, not at once.
    [ "$fast_exits" -gt 0 ] && sleep "$fast_exits"
done
rm -f "$node_dir/supervisor.pid"
"""

# /tmp is the overlay's own directory: private to the node like a tmpfs, without holding
# large pip downloads in RAM.
BOOT_SH = """#!/bin/sh
# Boots tfgpu-provision sandbox node {name}; runs as PID 1 of a fresh mount/pid/uts/ipc
# namespace and ends as the node's sshd.
set -eu
node_dir={node_dir}
root="$node_dir/merged"
mount --make-rprivate /
mount -t overlay tfgpu-sandbox \\
    -o "lowerdir={rootfs},upperdir=$node_dir/upper,workdir=$node_dir/work" "$root"
mount -t proc proc "$root/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$root/dev/shm"
mount -t tmpfs -o mode=755,nosuid,nodev,size=64m run "$root/run"
echo {name} > /proc/sys/kernel/hostname
mkdir -m 755 "$root/run/sshd"
cat /proc/sys/kernel/random/uuid > "$root{boot_id}"
exec chroot "$root" /usr/sbin/sshd -D -e -p {port} -o ListenAddress=127.0.0.1 -h {host_key}
"""


@dataclass(frozen=True)
class NodeFiles:
    """Where one node lives on the controller."""

    name: str
    dir: Path

    @property
    def upper(self) -> Path:
        return self.dir / "upper"

    @property
    def stop_file(self) -> Path:
        return self.dir / "stop"

    @property
    def failed_file(self) -> Path:
        return self.dir / "failed"

    @property
    def pid_file(self) -> Path:
        return self.dir / "supervisor.pid"

    @property
    def log(self) -> Path:
        return self.dir / "supervisor.log"


def _upper_dirs(lower: Path, upper: Path, rel: str) -> Path:
    """Create ``upper/rel``'s parents with the lower tree's modes, so that the merged view
    keeps them (an upper directory's own metadata wins in overlayfs)."""
    target = upper
    for part in Path(rel).parent.parts:
        target = target / part
        source = lower / target.relative_to(upper)
        if not target.exists():
            target.mkdir()
            st = source.stat() if source.is_dir() else None
            os.chmod(target, st.st_mode & 0o7777 if st else 0o755)
            if st:
                os.chown(target, st.st_uid, st.st_gid)
    return upper / rel


def write_upper_file(lower: Path, upper: Path, rel: str, data: bytes, mode: int) -> None:
    path = _upper_dirs(lower, upper, rel)
    path.unlink(missing_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)


def prepare(node: NodeFiles, rootfs: Path, port: int, authorized_key: str) -> None:
    """Write the node's scripts and its per-node files (hostname, keys) into its overlay.

    Only called while the node is stopped: overlayfs forbids touching ``upper`` while mounted.
    """
    for sub in ("upper", "work", "merged"):
        (node.dir / sub).mkdir(parents=True, exist_ok=True)
    node.dir.chmod(0o700)
    key = node.dir / "ssh_host_ed25519_key"
    if not key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", node.name, "-f", str(key)],
            check=True,
            stdin=subprocess.DEVNULL,
        )
    files: list[tuple[str, bytes, int]] = [
        ("etc/hostname", f"{node.name}\n".encode(), 0o644),
        ("etc/hosts", f"127.0.0.1\tlocalhost\n127.0.1.1\t{node.name}\n".encode(), 0o644),
        (HOST_KEY.lstrip("/"), key.read_bytes(), 0o600),
        (HOST_KEY.lstrip("/") + ".pub", key.with_suffix(".pub").read_bytes(), 0o644),
        ("root/.ssh/authorized_keys", authorized_key.encode(), 0o600),
    ]
    resolv = Path("/etc/resolv.conf")
    if resolv.exists():
        files.append(("etc/resolv.conf", resolv.read_bytes(), 0o644))
    for rel, data, mode in files:
        write_upper_file(rootfs, node.upper, rel, data, mode)
    ssh_dir = node.upper / "root/.ssh"
    ssh_dir.chmod(0o700)
    values = {
        "name": node.name,
        "node_dir": shlex.quote(str(node.dir)),
        "rootfs": str(rootfs),
        "port": port,
        "host_key": HOST_KEY,
        "boot_id": BOOT_ID_FILE,
    }
    (node.dir / "supervise.sh").write_text(SUPERVISE_SH.format(**values))
    (node.dir / "boot.sh").write_text(BOOT_SH.format(**values))
    for stale in (node.stop_file, node.failed_file, node.pid_file):
        stale.unlink(missing_ok=True)


def start(node: NodeFiles) -> None:
    """Start the node's supervisor detached from the caller (setsid -f forks it off), so it
    outlives the CLI."""
    with node.log.open("ab") as log:
        subprocess.run(
            ["setsid", "-f", "sh", str(node.dir / "supervise.sh")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            check=True,
            close_fds=True,
        )


def ssh_banner(port: int, timeout: float = 0.5) -> bool:
    """True once an SSH server answers on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1: bound at :0 together (so they differ) and released."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# ---- processes -------------------------------------------------------------------------


def _ppids() -> dict[int, int]:
    table: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # The command name in parentheses may itself contain spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        table[int(entry.name)] = int(fields[1])
    return table


def cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rfind(")") + 2 :].split()[0] != "Z"


def children(pid: int, ppids: dict[int, int] | None = None) -> list[int]:
    table = _ppids() if ppids is None else ppids
    return sorted(child for child, parent in table.items() if parent == pid)


def descendants(roots: Iterable[int], ppids: dict[int, int] | None = None) -> set[int]:
    table = _ppids() if ppids is None else ppids
    found: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo.extend(child for child, parent in table.items() if parent == pid)
    return found


def supervisor_pid(node: NodeFiles) -> int | None:
    try:
        pid = int(node.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if alive(pid) and str(node.dir / "supervise.sh") in cmdline(pid):
        return pid
    return None


def init_pid(node: NodeFiles) -> int | None:
    """The node's PID 1 (sshd), seen from the controller, or None when it is not booted."""
    sup = supervisor_pid(node)
    if sup is None:
        return None
    ppids = _ppids()
    for unshare in children(sup, ppids):
        for pid in children(unshare, ppids):
            if alive(pid):
                return pid
    return None


def node_pids(node: NodeFiles) -> set[int]:
    """Every live process of the node: supervisor, unshare, and all inside its namespace."""
    sup = supervisor_pid(node)
    if sup is None:
        return set()
    return {pid for pid in descendants([sup]) if alive(pid)}


def boot_id(node: NodeFiles) -> str | None:
    pid = init_pid(node)
    if pid is None:
        return None
    try:
        return Path(f"/proc/{pid}/root{BOOT_ID_FILE}").read_text().strip() or None
    except OSError:
        return None


def processes_referencing(path: Path) -> set[int]:
    """Live processes whose command line names ``path``, and all their descendants."""
    # The trailing slash keeps lab "t1" from matching lab "t12".
    needle = str(path).rstrip("/") + "/"
    me = os.getpid()
    ppids = _ppids()
    ancestors = {me}
    pid = me
    while pid in ppids and ppids[pid] > 1:
        pid = ppids[pid]
        ancestors.add(pid)
    roots = [pid for pid in ppids if pid not in ancestors and needle in cmdline(pid)]
    return {pid for pid in descendants(roots, ppids) if alive(pid)} - ancestors


def _signal(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def wait_gone(pids: set[int], timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    left = {pid for pid in pids if alive(pid)}
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = {pid for pid in left if alive(pid)}
    return left


def stop_processes(lab_dir: Path, timeout: float = 5.0) -> set[int]:
    """End every process of the lab: TERM each node's PID 1 (the supervisors see the stop
    files and exit), then KILL what is left. Returns the PIDs that would not die."""
    pids = processes_referencing(lab_dir)
    if not pids:
        return set()
    ppids = _ppids()
    # A node's PID 1 is the child of an `unshare` that names the lab directory.
    inits = [
        child
        for pid in pids
        if cmdline(pid).startswith("unshare ")
        for child in children(pid, ppids)
    ]
    _signal(inits, signal.SIGTERM)
    left = wait_gone(pids, timeout)
    if left:
        # Killing a PID 1 kills its whole namespace; then the rest.
        _signal([pid for pid in inits if pid in left], signal.SIGKILL)
        _signal(left, signal.SIGKILL)
        left = wait_gone(left, timeout)
    return left
