"""Benchmark of the sandbox lab (a script, not a test): ``python tests/perf/bench_sandbox.py``.

Measures, with a warm root filesystem cache (built first if missing, not timed):

* the wall time of ``sandbox up --hosts 4`` through the CLI, median of 3 runs, goal < 15 s;
* each idle node's memory: RSS and PSS summed over its processes (supervisor, unshare, and
  everything inside its namespace) from ``/proc/<pid>/smaps_rollup``, goal < 20 MB per node.
  PSS splits pages shared between nodes (the same sshd and libc) fairly, so it is what a node
  adds; RSS counts those shared pages in full for every node, so it overstates. The goal is
  judged on PSS; RSS is printed beside it.

Prints a table and a JSON line; exits 1 naming any goal missed. Needs root, like the sandbox.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tfgpu_provision.sandbox import lab as labs
from tfgpu_provision.sandbox import node as nodes
from tfgpu_provision.sandbox import rootfs

HOSTS = 4
ROUNDS = 3
UP_GOAL_S = 15.0
NODE_MEM_GOAL_MB = 20.0
IDLE_S = 2.0


def sandbox(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "tfgpu_provision.sandbox", *args],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=600,
    )


def node_memory_kb(item: labs.LabNode) -> tuple[int, int]:
    rss = pss = 0
    for pid in nodes.node_pids(item.files):
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, rest = line.partition(":")
            if key == "Rss":
                rss += int(rest.split()[0])
            elif key == "Pss":
                pss += int(rest.split()[0])
    return rss, pss


def main() -> int:
    if os.geteuid() != 0:
        print("bench_sandbox: needs root, like the sandbox itself", file=sys.stderr)
        return 2
    rootfs.ensure_rootfs(rootfs.make_recipe("bookworm", None), print)

    up_seconds: list[float] = []
    memory: list[dict[str, float | str]] = []
    for round_no in range(1, ROUNDS + 1):
        name = f"bench{uuid.uuid4().hex[:6]}"
        started = time.monotonic()
        try:
            sandbox("up", "--hosts", str(HOSTS), "--name", name)
            up_seconds.append(time.monotonic() - started)
            if round_no == ROUNDS:
                time.sleep(IDLE_S)
                for item in labs.Lab.load(name).nodes:
                    rss, pss = node_memory_kb(item)
                    memory.append({"host": item.name, "rss_mb": rss / 1024, "pss_mb": pss / 1024})
        finally:
            sandbox("down", "--name", name)

    up_median = statistics.median(up_seconds)
    worst_pss = max(float(m["pss_mb"]) for m in memory)
    worst_rss = max(float(m["rss_mb"]) for m in memory)
    missed = []
    if up_median >= UP_GOAL_S:
        missed.append(f"`sandbox up --hosts {HOSTS}` took {up_median:.2f} s (goal < {UP_GOAL_S} s)")
    if worst_pss >= NODE_MEM_GOAL_MB:
        missed.append(f"an idle node uses {worst_pss:.1f} MB PSS (goal < {NODE_MEM_GOAL_MB} MB)")

    print(f"{'measure':<42} {'value':>10}  {'goal':>8}  result")
    up_runs = ", ".join(f"{s:.2f}" for s in up_seconds)
    print(
        f"{f'sandbox up --hosts {HOSTS} (median of {ROUNDS}) s':<42} {up_median:>10.2f}  "
        f"{'< ' + str(UP_GOAL_S):>8}  {'ok' if up_median < UP_GOAL_S else 'MISSED'}  [{up_runs}]"
    )
    for m in memory:
        pss_mb, rss_mb = float(m["pss_mb"]), float(m["rss_mb"])
        label = f"idle node {m['host']} PSS MB (RSS {rss_mb:.1f})"
        print(
            f"{label:<42} {pss_mb:>10.1f}  "
            f"{'< ' + str(NODE_MEM_GOAL_MB):>8}  {'ok' if pss_mb < NODE_MEM_GOAL_MB else 'MISSED'}"
        )
    print(
        json.dumps(
            {
                "hosts": HOSTS,
                "up_seconds": [round(s, 3) for s in up_seconds],
                "up_median_s": round(up_median, 3),
                "up_goal_s": UP_GOAL_S,
                "node_memory_mb": [
                    {k: round(v, 2) if isinstance(v, float) else v for k, v in m.items()}
                    for m in memory
                ],
                "node_pss_max_mb": round(worst_pss, 2),
                "node_rss_max_mb": round(worst_rss, 2),
                "node_memory_goal_mb": NODE_MEM_GOAL_MB,
                "missed": missed,
            }
        )
    )
    for line in missed:
        print(f"goal missed: {line}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
