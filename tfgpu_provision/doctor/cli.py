"""``tfgpu-provision doctor``: parsing and the handler.

``add_doctor_subparser`` hangs the command on the main parser (the lead wires it into
``tfgpu_provision/cli.py``); ``python -m tfgpu_provision.doctor`` runs it alone.

Two ways in:

* ``doctor --inventory X [--limit H]`` runs ``playbooks/doctor.yml`` (read-only, check mode)
  through the runner, reads the evidence the ``gpu_doctor`` role wrote into the run directory
  and diagnoses each host;
* ``doctor --evidence FILE...`` diagnoses evidence files saved earlier, without any host.

Exit codes: 0 every host healthy (warnings allowed); 1 a finding explains a failure, or a host
gave no evidence; 2 bad input (nothing was touched).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tfgpu_provision.console import console, err_console
from tfgpu_provision.doctor import evidence, report
from tfgpu_provision.errors import EXIT_INTERRUPTED, BadInput, TfgpuError

EVIDENCE_SUBDIR = "doctor"
PLAYBOOK = "doctor.yml"

DESCRIPTION = """\
Explain why TensorFlow does not use a host's GPUs. Read-only: collects the preflight facts,
probes the CUDA driver directly (libcuda, no TensorFlow needed), asks TensorFlow inside the
env with its loader logging on, reads the kernel module, nouveau, Secure Boot, Fabric Manager,
CUDA_VISIBLE_DEVICES and the kernel log, then ranks what it finds: evidence -> cause -> fix.

Exit codes: 0 healthy; 1 a finding explains a failure (or a host gave no evidence);
2 bad input (no host was touched).
"""


def add_doctor_subparser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="explain why TensorFlow does not use the GPUs: ranked evidence -> cause -> fix",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    configure_parser(parser)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--inventory", help="inventory: a name or a path")
    parser.add_argument("-l", "--limit", help="only these hosts or groups")
    parser.add_argument(
        "-e",
        "--extra-vars",
        action="append",
        default=[],
        metavar="VARS",
        help="option overrides: key=value, JSON, or @file.yml (validated like the inventory)",
    )
    parser.add_argument("--forks", type=int, help="parallel hosts")
    parser.add_argument("--run-dir", type=Path, default=None, help="where run directories go")
    parser.add_argument("--tensorflow", help="TensorFlow release the host should run")
    parser.add_argument(
        "--evidence",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="diagnose saved evidence files (RUN_DIR/doctor/HOST.json) instead of running",
    )
    parser.add_argument("--format", choices=["table", "json"], default="table")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more Ansible output")
    parser.set_defaults(handler=cmd_doctor)


def _from_files(paths: list[Path]) -> list[report.HostReport]:
    return [report.examine(evidence.load(path)) for path in paths]


def _from_run(args: argparse.Namespace) -> tuple[list[report.HostReport], str, int]:
    from tfgpu_provision import provision, runner

    if not args.inventory:
        raise BadInput(
            "doctor needs --inventory (or --evidence FILE...).",
            fix="pass --inventory NAME|PATH, e.g. --inventory lab",
        )
    options = provision.RunOptions(
        inventory=args.inventory,
        limit=args.limit,
        tags=[],
        check=True,  # read-only by construction; check mode makes that explicit
        extra_vars=args.extra_vars,
        forks=args.forks,
        run_root=args.run_dir or provision.default_run_root(),
        tensorflow=args.tensorflow,
        verbosity=args.verbose,
    )
    prepared = provision.prepare(options, PLAYBOOK)
    if args.format == "json":
        result = runner.run(prepared.request, label="doctor")
    else:
        result = provision.execute(prepared, "doctor")
    if result.model.cancelled:
        return [], str(result.run_dir), EXIT_INTERRUPTED
    folder = result.run_dir / EVIDENCE_SUBDIR
    reports = []
    for host in prepared.hosts:
        path = folder / f"{host}.json"
        state = result.model.hosts.get(host)
        if path.is_file():
            reports.append(report.examine(evidence.load(path)))
            continue
        errors = (
            [f"{e['kind']} in '{e['task']}': {e['message']}" for e in state.errors] if state else []
        )
        if not state:
            errors.append(
                "the host did not run the doctor play (excluded by --limit or a pattern?)"
            )
        reports.append(report.unreachable(host, errors))
    for message in result.model.guard_errors:
        err_console.print(f"guard: {message}", markup=False)
    if not result.model.finished:
        err_console.print(
            f"The run did not finish; Ansible said:\n{result.output_tail()}", markup=False
        )
    return reports, str(result.run_dir), 0


def cmd_doctor(args: argparse.Namespace) -> int:
    run_dir: str | None = None
    if args.evidence:
        if args.inventory:
            raise BadInput("pass either --inventory or --evidence, not both.", fix="choose one")
        reports = _from_files(list(args.evidence))
    else:
        reports, run_dir, interrupted = _from_run(args)
        if interrupted:
            return interrupted
    if args.format == "json":
        print(report.to_json(reports, run_dir))
    else:
        console.print(report.render_table(reports))
        if run_dir:
            console.print(f"Evidence: {Path(run_dir) / EVIDENCE_SUBDIR}", markup=False)
    return report.exit_code(reports)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tfgpu_provision.doctor``: the doctor command on its own."""
    parser = argparse.ArgumentParser(
        prog="python -m tfgpu_provision.doctor",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    configure_parser(parser)
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except TfgpuError as exc:
        if args.debug:
            raise
        err_console.print(f"error: {exc}", markup=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["add_doctor_subparser", "cmd_doctor", "main"]
