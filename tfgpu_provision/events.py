"""ansible-runner job events -> the run model (per-host state).

Pure: fed one event dict at a time, either live from the runner or replayed from the
``job_events/*.json`` files of a finished run (the tests replay recorded runs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tfgpu_provision.errors import EXIT_HOST_FAILED, EXIT_INTERRUPTED, EXIT_OK

_STAT_KEYS = {
    "ok": "ok",
    "changed": "changed",
    "failures": "failed",
    "dark": "unreachable",
    "skipped": "skipped",
    "rescued": "rescued",
    "ignored": "ignored",
}


@dataclass
class HostState:
    """Everything the run learned about one host."""

    name: str
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0
    current_task: str = ""
    errors: list[dict[str, str]] = field(default_factory=list)
    preflight: dict[str, Any] | None = None

    @property
    def status(self) -> str:
        if self.unreachable:
            return "unreachable"
        if self.failed:
            return "failed"
        if self.changed:
            return "changed"
        return "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "ok": self.ok,
            "changed": self.changed,
            "failed": self.failed,
            "unreachable": self.unreachable,
            "skipped": self.skipped,
            "rescued": self.rescued,
            "ignored": self.ignored,
            "errors": self.errors,
            "preflight": self.preflight,
        }


@dataclass
class RunModel:
    """The state of a whole run, built from its event stream."""

    hosts: dict[str, HostState] = field(default_factory=dict)
    finished: bool = False
    cancelled: bool = False
    events_seen: int = 0
    guard_errors: list[str] = field(default_factory=list)

    def host(self, name: str) -> HostState:
        if name not in self.hosts:
            self.hosts[name] = HostState(name)
        return self.hosts[name]

    def apply(self, event: Mapping[str, Any]) -> HostState | None:
        """Fold one job event into the model; returns the host it touched, if any."""
        self.events_seen += 1
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        if kind == "playbook_on_stats":
            self._apply_stats(data)
            return None
        name = data.get("host")
        if not name or not isinstance(name, str):
            return None
        if name == "localhost" and _is_guard(data):
            if kind == "runner_on_failed":
                self.guard_errors.append(_message(data.get("res")))
            return None
        state = self.host(name)
        task = str(data.get("task") or "")
        res = data.get("res") or {}
        if kind == "runner_on_start":
            state.current_task = task
        elif kind in ("runner_on_ok", "runner_item_on_ok") and isinstance(res, Mapping):
            if isinstance(res.get("tfgpu_preflight"), Mapping):
                state.preflight = dict(res["tfgpu_preflight"])
        elif kind == "runner_on_failed" and not data.get("ignore_errors"):
            state.errors.append({"task": task, "message": _message(res), "kind": "failed"})
            if isinstance(res, Mapping) and isinstance(res.get("tfgpu_preflight"), Mapping):
                state.preflight = dict(res["tfgpu_preflight"])
        elif kind == "runner_on_unreachable":
            state.errors.append({"task": task, "message": _message(res), "kind": "unreachable"})
        return state

    def _apply_stats(self, data: Mapping[str, Any]) -> None:
        self.finished = True
        for stat_key, attr in _STAT_KEYS.items():
            per_host = data.get(stat_key) or {}
            if not isinstance(per_host, Mapping):
                continue
            for name, count in per_host.items():
                if name == "localhost" and name not in self.hosts:
                    continue
                setattr(self.host(name), attr, int(count))

    def exit_code(self) -> int:
        if self.cancelled:
            return EXIT_INTERRUPTED
        if self.guard_errors or any(
            h.status in ("failed", "unreachable") for h in self.hosts.values()
        ):
            return EXIT_HOST_FAILED
        if not self.finished:
            return EXIT_HOST_FAILED
        return EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "finished": self.finished,
            "cancelled": self.cancelled,
            "exit_code": self.exit_code(),
            "guard_errors": self.guard_errors,
            "hosts": [h.to_dict() for h in sorted(self.hosts.values(), key=lambda h: h.name)],
        }


def _is_guard(data: Mapping[str, Any]) -> bool:
    return str(data.get("play", "")).startswith("Guard")


def _message(res: object) -> str:
    if not isinstance(res, Mapping):
        return str(res)
    msg = str(res.get("msg") or "").strip()
    stderr = str(res.get("stderr") or "").strip()
    if stderr and msg in ("", "non-zero return code"):
        # A failed command says only "non-zero return code"; its cause is in stderr.
        tail = "\n".join(stderr.splitlines()[-3:])
        return f"{msg}: {tail}" if msg else tail
    for key in ("msg", "stderr", "module_stderr", "reason"):
        value = res.get(key)
        if value:
            return str(value).strip()
    return "failed without a message"


def replay(events: Iterable[Mapping[str, Any]]) -> RunModel:
    """Build the model of a finished run from its recorded events (in counter order)."""
    model = RunModel()
    for event in sorted(events, key=lambda e: int(e.get("counter", 0))):
        model.apply(event)
    return model
