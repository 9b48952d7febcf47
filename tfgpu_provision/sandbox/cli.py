"""``tfgpu-provision sandbox up|status|ssh|down``: argument parsing and the handlers.

``add_subparser`` hangs the ``sandbox`` command on the main parser; each handler takes the
parsed namespace and returns an exit code, raising ``TfgpuError`` for everything else.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from tfgpu_provision.errors import TfgpuError
from tfgpu_provision.sandbox import lab as labs
from tfgpu_provision.sandbox import node as nodes
from tfgpu_provision.sandbox.rootfs import SUITES


def _progress(line: str) -> None:
    print(f"sandbox: {line}", flush=True)


def add_subparser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sandbox = subparsers.add_parser(
        "sandbox",
        help="local lab of Debian nodes over SSH on 127.0.0.1 (no GPUs; needs root)",
        description="Run a local lab of Debian nodes: each one a namespace on an overlay "
        "root with sshd on 127.0.0.1, listed in an inventory usable as --inventory LAB.",
    )
    commands = sandbox.add_subparsers(dest="sandbox_command", metavar="COMMAND", required=True)
    name_help = f"lab name (default {labs.DEFAULT_LAB!r}); hosts are named LAB-1..N"

    p_up = commands.add_parser("up", help="build (once) and start a lab, write its inventory")
    p_up.add_argument("--name", default=labs.DEFAULT_LAB, help=name_help)
    p_up.add_argument("--hosts", type=int, default=2, help="number of hosts (default 2)")
    p_up.add_argument("--suite", choices=SUITES, default="bookworm", help="Debian release")
    p_up.add_argument(
        "--simulate-gpus", type=int, default=0, metavar="K",
        help="GPUs each host pretends to have (inventory var tfgpu_simulate_gpus)",
    )  # fmt: skip
    p_up.add_argument(
        "--mirror", metavar="URL",
        help="Debian mirror for the root filesystem (default: this machine's apt sources)",
    )  # fmt: skip
    p_up.set_defaults(handler=cmd_up)

    p_status = commands.add_parser("status", help="show a lab's hosts, ports and states")
    p_status.add_argument("--name", default=labs.DEFAULT_LAB, help=name_help)
    p_status.set_defaults(handler=cmd_status)

    p_ssh = commands.add_parser("ssh", help="open a shell on a host, or run `-- CMD...` there")
    p_ssh.add_argument("host", metavar="HOST", help="host name (LAB-N) or its number N")
    p_ssh.add_argument("command", nargs=argparse.REMAINDER, help="command to run (after --)")
    p_ssh.add_argument(
        "--name", help="lab name (default: the LAB of a HOST named LAB-N, else 'sandbox')"
    )
    p_ssh.set_defaults(handler=cmd_ssh)

    p_down = commands.add_parser("down", help="stop a lab and remove its state and overlays")
    which = p_down.add_mutually_exclusive_group()
    which.add_argument("--name", default=labs.DEFAULT_LAB, help=name_help)
    which.add_argument("--all", action="store_true", help="stop every lab")
    p_down.set_defaults(handler=cmd_down)


def cmd_up(args: argparse.Namespace) -> int:
    labs.up(
        name=args.name,
        hosts=args.hosts,
        suite=args.suite,
        simulate_gpus=args.simulate_gpus,
        mirror=args.mirror,
        progress=_progress,
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    lab = labs.status(args.name)
    print(
        f"lab {lab.name}: {len(lab.nodes)} {lab.suite} host(s), simulated GPUs per host: "
        f"{lab.simulate_gpus}"
    )
    print(f"inventory: {lab.inventory}")
    print(f"{'HOST':<20} {'PORT':>6}  {'STATE':<8} {'PID':>8}  BOOT-ID")
    bad = 0
    for item in lab.nodes:
        state = item.state
        bad += state != "running"
        pid = nodes.init_pid(item.files)
        boot = nodes.boot_id(item.files) or "-"
        print(f"{item.name:<20} {item.port:>6}  {state:<8} {pid or '-':>8}  {boot}")
    if bad:
        raise TfgpuError(
            f"{bad} host(s) of lab {lab.name} are not running",
            fix=f"`tfgpu-provision sandbox up --name {lab.name} --hosts {len(lab.nodes)}` "
            "restarts them.",
        )
    return 0


def cmd_ssh(args: argparse.Namespace) -> int:
    name = args.name or labs.lab_of_host(args.host) or labs.DEFAULT_LAB
    lab = labs.status(name)
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    argv = lab.ssh_argv(args.host, command)
    return subprocess.run(argv, check=False).returncode


def cmd_down(args: argparse.Namespace) -> int:
    if args.all:
        labs.down_all(progress=_progress)
    else:
        labs.down(args.name, progress=_progress)
    return 0


def run(argv: list[str] | None = None) -> int:
    """Parse and run ``sandbox ...`` arguments alone (``python -m tfgpu_provision.sandbox``)."""
    parser = argparse.ArgumentParser(prog="python -m tfgpu_provision.sandbox")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_subparser(subparsers)
    args = parser.parse_args(["sandbox", *(sys.argv[1:] if argv is None else argv)])
    try:
        code: int = args.handler(args)
    except TfgpuError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return code
