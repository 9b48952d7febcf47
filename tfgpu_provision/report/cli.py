"""``tfgpu-provision report [RUN] --format ...``: re-render any past run.

RUN is a run directory, or the name (or a unique part of the name) of one under the run
root (``--run-dir``, else ``$TFGPU_RUN_DIR``, else ``./.tfgpu/runs``); without RUN the
latest run (newest ``summary.json``) is shown. The exit code is
the run's own (0 all hosts pass or simulated, 1 otherwise), so a CI step can gate on it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tfgpu_provision.errors import BadInput

FORMATS = ("table", "json", "junit", "markdown", "html")


def add_report_subparser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "report",
        help="re-render a past run: table, json, junit, markdown or html",
        description="Render the report of a past run. RUN is a run directory or a run name "
        "under the run root (default: the latest run).",
    )
    parser.add_argument(
        "run", nargs="?", metavar="RUN", help="run directory or run name (default: the latest)"
    )
    parser.add_argument("--format", choices=FORMATS, default="table", help="default: table")
    parser.add_argument(
        "--run-dir",
        type=Path,
        # SUPPRESS: a --run-dir given before the command (a main-parser option) is kept.
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="where run directories are (default $TFGPU_RUN_DIR or ./.tfgpu/runs)",
    )
    parser.add_argument(
        "--write", action="store_true", help="also (re)write every report file into the run"
    )
    parser.set_defaults(handler=cmd_report)


def _runs(root: Path) -> list[Path]:
    """Run directories under root, oldest first."""
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if p.is_dir() and (p / "summary.json").is_file()]
    return sorted(runs, key=lambda p: ((p / "summary.json").stat().st_mtime, p.name))


def find_run(run: str | None, root: Path) -> Path:
    """Resolve RUN (a path, a run name, or None for the latest) to a run directory."""
    runs = _runs(root)
    if run is None:
        if not runs:
            raise BadInput(
                f"no runs under {root}.",
                fix="run tfgpu-provision first, or pass a run directory as RUN",
            )
        return runs[-1]
    path = Path(run).expanduser()
    if path.is_dir():
        if not (path / "summary.json").is_file():
            raise BadInput(f"{path} is not a run directory (it has no summary.json).")
        return path
    by_name = {p.name: p for p in runs}
    if run in by_name:
        return by_name[run]
    matches = [p for p in runs if run in p.name]
    if len(matches) == 1:
        return matches[0]
    names = [p.name for p in reversed(runs)][:10]
    known = ", ".join(names) if names else "none"
    more = f" (and {len(runs) - len(names)} older)" if len(runs) > len(names) else ""
    what = "matches several runs" if matches else "is neither a run directory nor a run name"
    raise BadInput(f"{run!r} {what} under {root}. Runs there: {known}{more}.")


def cmd_report(args: argparse.Namespace) -> int:
    from tfgpu_provision.console import console
    from tfgpu_provision.provision import default_run_root
    from tfgpu_provision.report import load_run, render, terminal, write_reports

    root = getattr(args, "run_dir", None) or default_run_root()
    run_dir = find_run(args.run, Path(root))
    report = load_run(run_dir)
    if args.write:
        write_reports(run_dir, report)
    if args.format == "table":
        console.print(terminal.render(report))
    else:
        print(render(report, args.format), end="")
    return report.exit_code
