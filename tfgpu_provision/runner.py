"""Runs playbooks through ansible-runner: the only module that imports ``ansible_runner``.

One kwargs dict is built per run; the event handler only folds events into the run model
and refreshes the progress view; per-host results come from the final stats event.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from tfgpu_provision import procs
from tfgpu_provision.errors import BadInput
from tfgpu_provision.events import RunModel
from tfgpu_provision.inventory import content_root

FACT_CACHE = Path("~/.cache/tfgpu-provision/facts").expanduser()


@dataclass
class RunRequest:
    """What to run; built by the CLI from validated input."""

    playbook: str
    inventory: Path
    limit: str | None = None
    tags: list[str] = field(default_factory=list)
    check: bool = False
    extravars: dict[str, Any] = field(default_factory=dict)
    forks: int | None = None
    run_root: Path = Path(".tfgpu/runs")
    verbosity: int = 0
    vault_password_file: Path | None = None


@dataclass
class RunResult:
    """A finished (or cancelled) run."""

    model: RunModel
    run_dir: Path
    artifacts: Path
    status: str
    exit_code: int
    playbook: str = ""
    verify_expected: bool = False

    def output_tail(self, lines: int = 15) -> str:
        """The end of Ansible's own output: the explanation when no host event came back."""
        try:
            text = (self.artifacts / "stdout").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


def playbook_path(name: str) -> Path:
    """A playbook of the package by name (``site.yml``), or any playbook by absolute path."""
    path = Path(name) if Path(name).is_absolute() else content_root() / "playbooks" / name
    if not path.is_file():
        raise BadInput(f"playbook {name!r} not found at {path}.", fix="Reinstall tfgpu-provision.")
    return path


def new_run_dir(run_root: Path, label: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = run_root.expanduser().resolve() / f"{stamp}-{label}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def _runner_kwargs(request: RunRequest, run_dir: Path) -> dict[str, Any]:
    root = content_root()
    FACT_CACHE.mkdir(parents=True, exist_ok=True)
    cmdline = ["--check"] if request.check else []
    if request.vault_password_file:
        cmdline += ["--vault-password-file", str(request.vault_password_file)]
    kwargs: dict[str, Any] = {
        "private_data_dir": str(run_dir),
        "ident": "run",
        "playbook": str(playbook_path(request.playbook)),
        "inventory": str(request.inventory.resolve()),
        "extravars": dict(request.extravars),
        "envvars": {
            "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
            "ANSIBLE_ROLES_PATH": str(root / "roles"),
            # ansible-runner adds its own callback directory to this one (ansible.cfg's
            # callback_plugins would be overridden by the variable runner sets).
            "ANSIBLE_CALLBACK_PLUGINS": str(root / "playbooks" / "callback_plugins"),
            "ANSIBLE_HOST_KEY_CHECKING": os.environ.get("ANSIBLE_HOST_KEY_CHECKING", "True"),
            "ANSIBLE_NOCOLOR": "1",
            # Where roles put files for the controller (verify documents): this run's directory.
            "TFGPU_RUN_ARTIFACTS": str(run_dir),
        },
        # ansible-runner keeps facts per run by default; a shared cache lets a rerun skip them.
        "fact_cache_type": "jsonfile",
        "fact_cache": str(FACT_CACHE),
        "quiet": True,
        "verbosity": request.verbosity,
        "settings": {"suppress_env_files": True},
    }
    # The venv's ansible-playbook first, even when the venv is not activated.
    venv_bin = str(Path(sys.executable).parent)
    kwargs["envvars"]["PATH"] = os.pathsep.join([venv_bin, os.environ.get("PATH", os.defpath)])
    if request.limit:
        kwargs["limit"] = request.limit
    if request.tags:
        kwargs["tags"] = ",".join(request.tags)
    if request.forks:
        kwargs["forks"] = request.forks
    if cmdline:
        kwargs["cmdline"] = shlex.join(cmdline)
    return kwargs


class _Interrupt:
    """SIGINT sets a flag that ansible-runner polls through its cancel callback."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self.tree: dict[int, str] = {}

    def __enter__(self) -> _Interrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

    def cancel(self) -> bool:
        if self.requested and not self.tree:
            self.tree = procs.descendants(os.getpid())
        return self.requested


def run(
    request: RunRequest,
    *,
    on_event: Callable[[RunModel, Mapping[str, Any]], None] | None = None,
    label: str | None = None,
) -> RunResult:
    """Run one playbook; return the model, the run directory and the exit code."""
    import ansible_runner  # the only import of ansible_runner in the package

    run_dir = new_run_dir(request.run_root, label or Path(request.playbook).stem)
    model = RunModel()
    kwargs = _runner_kwargs(request, run_dir)

    def handle(event: dict[str, Any]) -> bool:
        model.apply(event)
        if on_event is not None:
            on_event(model, event)
        return True  # keep the event on disk in job_events/

    with _Interrupt() as interrupt:
        runner = ansible_runner.run(
            **kwargs, event_handler=handle, cancel_callback=interrupt.cancel
        )
        model.cancelled = interrupt.requested or runner.status == "canceled"
    if interrupt.tree:
        procs.terminate(interrupt.tree)

    artifacts = run_dir / "artifacts" / "run"
    result = RunResult(
        model=model,
        run_dir=run_dir,
        artifacts=artifacts,
        status=str(runner.status),
        exit_code=model.exit_code(),
        playbook=request.playbook,
        verify_expected=_runs_verify(request),
    )
    write_summary(result)
    return result


def _runs_verify(request: RunRequest) -> bool:
    """Whether this run's plays include the verify stage (so a host without a result failed)."""
    if Path(request.playbook).stem not in ("site", "verify") or request.check:
        return False
    return not request.tags or "verify" in request.tags


def write_summary(result: RunResult) -> Path:
    path = result.run_dir / "summary.json"
    doc = {
        "status": result.status,
        "playbook": result.playbook,
        "verify_expected": result.verify_expected,
        "artifacts": str(result.artifacts),
        **result.model.to_dict(),
    }
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return path
