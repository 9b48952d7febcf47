"""Shared plumbing of the fault suite: sandbox labs, merged inventories, CLI runs, host probes.

Every fault runs through the real CLI (`python -m tfgpu_provision.cli`) against sandbox hosts,
and every test reads what a user would read: the exit code, the output, and the run
directory's ``summary.json`` / ``report.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def missing_support() -> str | None:
    """Why the fault suite cannot run here, or None."""
    if os.geteuid() != 0:
        return "the fault suite needs root (sandbox namespaces, overlay mounts)"
    if shutil.which("debootstrap") is None and not Path("/usr/sbin/debootstrap").exists():
        return "the fault suite needs debootstrap (make system-deps)"
    return None


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def folded(text: str) -> str:
    """Whitespace folded: Rich wraps long lines at the terminal width."""
    return " ".join(text.split())


# ---- labs ------------------------------------------------------------------------------------


def sandbox(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tfgpu_provision.sandbox", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Lab:
    """A sandbox lab started for the fault suite (its hosts, SSH access, node processes)."""

    name: str
    hosts: list[str] = field(default_factory=list)
    inventory: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def up(cls, name: str, hosts: int, suite: str = "bookworm") -> Lab:
        proc = sandbox("up", "--name", name, "--hosts", str(hosts), "--suite", suite)
        if proc.returncode != 0:
            sandbox("down", "--name", name)
            raise AssertionError(f"sandbox up {name} failed: {proc.stdout}{proc.stderr}")
        from tfgpu_provision.sandbox import lab as labs

        doc = yaml.safe_load(labs.inventory_path(name).read_text())
        names = list(doc["all"]["children"]["gpu_nodes"]["hosts"])
        return cls(name=name, hosts=names, inventory=doc)

    def down(self) -> None:
        sandbox("down", "--name", self.name)

    def host_vars(self, host: str) -> dict[str, Any]:
        return dict(self.inventory["all"]["children"]["gpu_nodes"]["hosts"][host])

    def group_vars(self) -> dict[str, Any]:
        return dict(self.inventory["all"]["children"]["gpu_nodes"]["vars"])

    def _loaded(self) -> Any:
        from tfgpu_provision.sandbox import lab as labs

        return labs.Lab.load(self.name)

    def ssh(self, host: str, command: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
        argv = self._loaded().ssh_argv(host, [command])
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def sh(self, host: str, command: str, timeout: int = 120) -> str:
        """Run a command on a host; it must succeed; returns its stdout."""
        proc = self.ssh(host, command, timeout)
        assert proc.returncode == 0, f"{host}: `{command}` exited {proc.returncode}: {proc.stderr}"
        return proc.stdout

    def init_pid(self, host: str) -> int | None:
        """The host's PID 1 (its sshd) as the controller sees it."""
        from tfgpu_provision.sandbox import node as nodes

        return nodes.init_pid(self._loaded().node(host).files)

    def host_pids(self, host: str) -> set[int]:
        from tfgpu_provision.sandbox import node as nodes

        return nodes.node_pids(self._loaded().node(host).files)

    def wait_running(self, host: str, timeout: float = 60) -> None:
        from tfgpu_provision.sandbox import node as nodes

        node = self._loaded().node(host)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.state == "running" and nodes.ssh_banner(node.port):
                return
            time.sleep(0.3)
        raise AssertionError(f"{host} did not come back within {timeout:.0f} s")

    def dpkg_audit(self, host: str) -> str:
        """`dpkg --audit` output: empty when no package is half installed or configured."""
        return self.sh(host, "dpkg --audit").strip()


def write_inventory(
    path: Path,
    hosts: Mapping[str, Mapping[str, Any]],
    group_vars: Mapping[str, Any],
) -> Path:
    """An inventory whose gpu_nodes are ``hosts`` (name -> host vars) with ``group_vars``."""
    doc = {
        "all": {
            "children": {
                "gpu_nodes": {
                    "hosts": {name: dict(v) for name, v in hosts.items()},
                    "vars": dict(group_vars),
                }
            }
        }
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


# ---- runs ------------------------------------------------------------------------------------


@dataclass
class Run:
    """One CLI run: exit code, output (whitespace folded), its run directory's documents."""

    rc: int
    stdout: str
    stderr: str
    wall_s: float
    run_dir: Path | None

    @property
    def output(self) -> str:
        return folded(self.stdout + "\n" + self.stderr)

    @property
    def summary(self) -> dict[str, Any]:
        assert self.run_dir is not None, f"no run directory (exit {self.rc}): {self.output[-3000:]}"
        return dict(json.loads((self.run_dir / "summary.json").read_text()))

    @property
    def report(self) -> dict[str, Any]:
        assert self.run_dir is not None, f"no run directory (exit {self.rc}): {self.output[-3000:]}"
        return dict(json.loads((self.run_dir / "report.json").read_text()))

    def host(self, name: str) -> dict[str, Any]:
        """The host's entry in report.json."""
        hosts = {h["name"]: h for h in self.report["hosts"]}
        assert name in hosts, f"{name} not in report: {sorted(hosts)}"
        return dict(hosts[name])

    def summary_host(self, name: str) -> dict[str, Any]:
        hosts = {h["name"]: h for h in self.summary["hosts"]}
        assert name in hosts, f"{name} not in summary: {sorted(hosts)}"
        return dict(hosts[name])

    def diagnosis_text(self, name: str) -> str:
        host = self.host(name)
        return folded(json.dumps([host["reason"], host["diagnoses"], host["errors"]]))


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return dict(os.environ, COLUMNS="200", NO_COLOR="1", **(extra or {}))


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "tfgpu_provision.cli", *args]


def newest_run(run_root: Path, before: set[Path]) -> Path | None:
    new = [p for p in run_root.glob("*") if p.is_dir() and p not in before]
    return max(new, key=lambda p: p.stat().st_mtime) if new else None


def tfgpu(
    *args: str,
    run_root: Path,
    env: Mapping[str, str] | None = None,
    timeout: int = 1800,
) -> Run:
    """`tfgpu-provision ARGS --run-dir RUN_ROOT`, waited for."""
    run_root.mkdir(parents=True, exist_ok=True)
    before = set(run_root.glob("*"))
    start = time.monotonic()
    proc = subprocess.run(
        cli_argv(*args, "--run-dir", str(run_root)),
        capture_output=True,
        text=True,
        env=cli_env(env),
        timeout=timeout,
        check=False,
        cwd=run_root,
    )
    wall = time.monotonic() - start
    run = Run(proc.returncode, proc.stdout, proc.stderr, wall, newest_run(run_root, before))
    print(f"$ tfgpu-provision {' '.join(args)}  -> exit {run.rc} in {wall:.0f} s")
    return run


def processes(pids: set[int]) -> Iterator[tuple[int, str]]:
    for pid in sorted(pids):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        yield pid, cmd


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
