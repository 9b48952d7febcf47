"""Facts are reused across runs: ansible.cfg's jsonfile cache, not ansible-runner's per-run one.

ansible-runner points Ansible's jsonfile cache at ``artifacts/<ident>/fact_cache`` unless told
otherwise, so by default every run gathers again. Through ``runner.run`` (the CLI's path) a
play with ``gather_facts: true`` on a fresh sandbox host must run the setup module on the
first run, write ``~/.cache/tfgpu-provision/facts/<host>``, and on the second run
(``gathering = smart``) not run setup at all, leaving the file untouched - while the facts
are still there for the play's tasks. Half a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.sandbox_cli import sandbox
from tfgpu_provision import runner

pytestmark = pytest.mark.integration

GATHER_ACTIONS = {"gather_facts", "ansible.builtin.gather_facts", "setup", "ansible.builtin.setup"}

PLAY = """\
---
- name: Use facts
  hosts: gpu_nodes
  gather_facts: true
  tasks:
    - name: Show the distribution from the facts
      ansible.builtin.debug:
        msg: "distribution={{ ansible_facts['distribution'] }}"
"""


def cache_files(host: str) -> list[Path]:
    """The host's files in the fact cache (ansible-core 2.19 names them ``s<schema>_<host>``)."""
    if not runner.FACT_CACHE.is_dir():
        return []
    return [p for p in runner.FACT_CACHE.iterdir() if p.name == host or p.name.endswith(f"_{host}")]


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[str, Path]]:
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        pytest.skip("fact cache integration test needs root and debootstrap (sandbox hosts)")
    name = f"perffact{uuid.uuid4().hex[:5]}"
    sandbox("up", "--name", name, "--hosts", "1")
    try:
        yield f"{name}-1", Path.home() / ".cache/tfgpu-provision/sandbox" / name / "inventory.yml"
    finally:
        sandbox("down", "--name", name)
        for path in cache_files(f"{name}-1"):
            path.unlink(missing_ok=True)


def _events(result: runner.RunResult) -> list[dict[str, object]]:
    return [
        json.loads(p.read_text()) for p in sorted((result.artifacts / "job_events").glob("*.json"))
    ]


def _gathered(result: runner.RunResult, host: str) -> int:
    count = 0
    for event in _events(result):
        data = event.get("event_data")
        if not isinstance(data, dict) or event.get("event") != "runner_on_ok":
            continue
        if data.get("host") == host and data.get("task_action") in GATHER_ACTIONS:
            count += 1
    return count


def _debug_messages(result: runner.RunResult) -> list[str]:
    found = []
    for event in _events(result):
        data = event.get("event_data")
        if isinstance(data, dict) and event.get("event") == "runner_on_ok":
            res = data.get("res")
            if isinstance(res, dict) and "msg" in res:
                found.append(str(res["msg"]))
    return found


def test_second_run_reads_cached_facts_without_gathering(
    lab: tuple[str, Path], tmp_path: Path
) -> None:
    host, inventory_path = lab
    playbook = tmp_path / "facts.yml"
    playbook.write_text(PLAY)
    assert cache_files(host) == [], "facts cached before the first run"

    def run() -> runner.RunResult:
        request = runner.RunRequest(
            playbook=str(playbook), inventory=inventory_path, run_root=tmp_path / "runs"
        )
        result = runner.run(request)
        assert result.status == "successful", (result.artifacts / "stdout").read_text()[-3000:]
        return result

    first = run()
    assert _gathered(first, host) == 1
    files = cache_files(host)
    assert len(files) == 1, f"the first run did not write {host}'s facts in {runner.FACT_CACHE}"
    cached = files[0]
    facts = json.loads(cached.read_text())
    if isinstance(facts.get("__payload__"), str):  # ansible-core 2.19 wraps the facts
        facts = json.loads(facts["__payload__"])
    assert facts.get("ansible_distribution") == "Debian", sorted(facts)[:20]
    # ansible-runner's own per-run cache would be here; it must not be the one used.
    assert not (first.artifacts / "fact_cache" / host).exists()
    written = cached.stat().st_mtime_ns

    second = run()
    assert _gathered(second, host) == 0, "the second run gathered facts again"
    assert cached.stat().st_mtime_ns == written
    assert "distribution=Debian" in _debug_messages(second)
