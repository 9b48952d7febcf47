"""Live progress of a run: a per-host table on a terminal, plain lines otherwise."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tfgpu_provision.events import RunModel

_RESULT_WORDS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "FAILED",
    "runner_on_unreachable": "UNREACHABLE",
    "runner_on_skipped": "skipped",
}


def host_table(model: RunModel, title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("host", "status", "ok", "changed", "failed", "unreachable", "current task"):
        table.add_column(column)
    for host in sorted(model.hosts.values(), key=lambda h: h.name):
        table.add_row(
            host.name,
            host.status,
            str(host.ok),
            str(host.changed),
            str(host.failed),
            str(host.unreachable),
            Text(host.current_task),
        )
    return table


class Progress:
    """Callable event sink for ``runner.run(on_event=...)``."""

    def __init__(self, console: Console, title: str) -> None:
        self.console = console
        self.title = title
        self.live: Live | None = None
        self.interactive = console.is_terminal

    def __enter__(self) -> Progress:
        if self.interactive:
            self.live = Live(console=self.console, refresh_per_second=4, transient=False)
            self.live.__enter__()
        else:
            self.console.print(f"{self.title}: started")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.live is not None:
            self.live.__exit__(exc_type, exc, tb)

    def __call__(self, model: RunModel, event: Mapping[str, Any]) -> None:
        if self.live is not None:
            self.live.update(host_table(model, self.title))
            return
        kind = str(event.get("event", ""))
        data = event.get("event_data") or {}
        word = _RESULT_WORDS.get(kind)
        if word is None:
            return
        res = data.get("res") or {}
        if word == "ok" and isinstance(res, Mapping) and res.get("changed"):
            word = "changed"
        self.console.print(
            f"[{data.get('host', '?')}] {word}: {data.get('task', '')}", markup=False
        )
