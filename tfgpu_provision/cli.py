"""Command line: parsing and dispatch only. Errors are caught once, in ``main``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tfgpu_provision import __version__
from tfgpu_provision.console import console, err_console
from tfgpu_provision.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, TfgpuError
from tfgpu_provision.provision import RunOptions, default_run_root

DESCRIPTION = """\
Provision GPU nodes with a compatible NVIDIA driver, CUDA, cuDNN and TensorFlow env,
then prove the GPUs work.

  tfgpu-provision --inventory lab            preflight and provision every gpu_nodes host
  tfgpu-provision plan --inventory lab       show what would be installed, change nothing
  tfgpu-provision matrix --tensorflow 2.21   what a TensorFlow release needs

Exit codes: 0 all hosts good; 1 a host failed or was unreachable; 2 bad input (no host
was touched); 130 interrupted (partial summary written).
"""


def _run_options(parser: argparse.ArgumentParser, *, required_inventory: bool) -> None:
    group = parser.add_argument_group("run options")
    group.add_argument(
        "-i",
        "--inventory",
        required=required_inventory,
        help="inventory: a name (lab, a sandbox lab) or a path to a file or directory",
    )
    group.add_argument("-l", "--limit", help="only these hosts or groups (Ansible pattern)")
    group.add_argument(
        "-t", "--tags", action="append", default=[], help="only tasks with these tags"
    )
    group.add_argument(
        "--check", action="store_true", help="Ansible check mode: report, change nothing"
    )
    group.add_argument(
        "-e",
        "--extra-vars",
        action="append",
        default=[],
        metavar="VARS",
        help="option overrides: key=value, JSON, or @file.yml (validated like the inventory)",
    )
    group.add_argument("--forks", type=int, help="parallel hosts (default: the host count, max 50)")
    group.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="where run directories go (default ./.tfgpu/runs, or $TFGPU_RUN_DIR)",
    )
    group.add_argument("--tensorflow", help="TensorFlow release: 2.21, 2.21.0 or latest")
    group.add_argument(
        "--vault-password-file",
        type=Path,
        help="file holding the Ansible Vault password for vaulted inventory values",
    )
    group.add_argument(
        "--retry-failed",
        action="store_true",
        help="run only the hosts that failed or were unreachable in the last run",
    )
    group.add_argument("-v", "--verbose", action="count", default=0, help="more Ansible output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfgpu-provision",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    _run_options(parser, required_inventory=False)
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND")

    matrix = sub.add_parser(
        "matrix", help="what each TensorFlow release needs (driver, CUDA, cuDNN, Python)"
    )
    matrix.add_argument("--tensorflow", help="one release: 2.21, 2.21.0 or latest")
    matrix.add_argument("--format", choices=["table", "json"], default="table")

    plan = sub.add_parser(
        "plan", help="preflight only: per host, current -> target stack; changes nothing"
    )
    _run_options(plan, required_inventory=True)
    plan.add_argument("--format", choices=["table", "json"], default="table")

    verify = sub.add_parser(
        "verify", help="run only the verify stage (multi-GPU TensorFlow check) and report"
    )
    _run_options(verify, required_inventory=True)

    from tfgpu_provision.doctor.cli import add_doctor_subparser
    from tfgpu_provision.report.cli import add_report_subparser

    add_report_subparser(sub)
    add_doctor_subparser(sub)
    try:
        from tfgpu_provision.sandbox.cli import add_subparser
    except ImportError:  # the sandbox package is optional at import time
        pass
    else:
        add_subparser(sub)
    return parser


def _run_options_from(args: argparse.Namespace) -> RunOptions:
    if not args.inventory:
        raise TfgpuError(
            "no inventory given.",
            fix="pass --inventory NAME|PATH (e.g. --inventory lab, or a sandbox lab name)",
            exit_code=EXIT_BAD_INPUT,
        )
    return RunOptions(
        inventory=args.inventory,
        limit=args.limit,
        tags=args.tags,
        check=args.check,
        extra_vars=args.extra_vars,
        forks=args.forks,
        run_root=args.run_dir or default_run_root(),
        tensorflow=args.tensorflow,
        verbosity=args.verbose,
        vault_password_file=args.vault_password_file,
        retry_failed=args.retry_failed,
    )


def cmd_matrix(args: argparse.Namespace) -> int:
    from tfgpu_provision.compat import render

    if args.format == "json":
        print(render.render_json(tensorflow=args.tensorflow))
    else:
        width = console.width if console.is_terminal else 200  # a pipe or a log: keep every column
        print(render.render_table(tensorflow=args.tensorflow, width=width))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from tfgpu_provision import plan, provision, runner

    options = _run_options_from(args)
    options.check = True  # the preflight is read-only; check mode makes that explicit
    prepared = provision.prepare(options, "preflight.yml")
    if args.format == "json":
        result = runner.run(prepared.request, label="plan")
        print(plan.to_json(result.model))
    else:
        result = provision.execute(prepared, "plan")
        console.print(plan.render_table(result.model))
        if not result.model.finished and not result.model.cancelled:
            err_console.print(
                f"The run did not finish; Ansible said:\n{result.output_tail()}", markup=False
            )
        if result.exit_code:
            err_console.print(f"Run artifacts (events, stdout): {result.artifacts}", markup=False)
    return result.exit_code


def cmd_provision(args: argparse.Namespace) -> int:
    from tfgpu_provision import provision

    options = _run_options_from(args)
    prepared = provision.prepare(options, "site.yml")
    result = provision.execute(prepared, "provision")
    return provision.report_run(result)


def cmd_verify(args: argparse.Namespace) -> int:
    from tfgpu_provision import provision

    prepared = provision.prepare(_run_options_from(args), "verify.yml")
    result = provision.execute(prepared, "verify")
    return provision.report_run(result)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"matrix": cmd_matrix, "plan": cmd_plan, "verify": cmd_verify, None: cmd_provision}
    handler = handlers.get(args.subcommand) or getattr(args, "handler", None)
    try:
        if handler is None:
            parser.error(f"unknown command {args.subcommand}")
        return int(handler(args))
    except TfgpuError as exc:
        if args.debug:
            raise
        prefix = "error: " if exc.exit_code else ""
        err_console.print(f"{prefix}{exc}", markup=False, soft_wrap=True)
        return exc.exit_code
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
