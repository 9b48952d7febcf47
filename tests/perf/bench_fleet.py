"""Fleet benchmark (a script, not a test): ``python tests/perf/bench_fleet.py`` (``make bench``).

Measures in one run, on sandbox hosts, five ratios (each numerator and denominator measured
in this run, repeated and reduced to medians where a repeat is cheap):

a. upstream bytes (apt + pip) for 4 fresh hosts / for 1 fresh host, with the caches - goal
   <= 1.1. apt: what left the controller for the archive, counted by a proxy in front of a
   fresh apt-cacher-ng per scenario (``tests/fixtures/countproxy.py``). pip: what the
   controller's wheelhouse downloaded during the run (0 when it is warm) plus, charged once
   per run, the wheelhouse a cold controller would download. Naive figure: each host
   downloading for itself = (apt bytes of the 1-host run + the wheelhouse) x N.
b. no-op rerun on the 4 converged hosts, ``ansible-playbook`` with our ansible.cfg / with
   Ansible's defaults (an ansible.cfg with only roles_path; a fresh ControlPath directory per
   run, as a rerun finds it after the default 60 s ControlPersist) - goal <= 0.5. The rerun
   is site.yml with ``--tags driver,cuda,cudnn,env`` (guard and preflight always run): the
   verify stage is left out because it re-runs the TensorFlow check on purpose every time,
   identical host-side compute under either configuration that is not Ansible overhead.
c. controller CPU seconds per host (user+sys of the CLI's process tree from
   ``getrusage(RUSAGE_CHILDREN)``; sandbox hosts' sshd and everything they run are not the
   CLI's children, so host-side work is excluded; so are ssh ControlPersist masters, which
   detach) for a full provisioning of 4 fresh hosts / of 1 fresh host - goal <= 1.2. The
   same two runs as (a); both wall times are printed.
d. ``tfgpu-provision plan`` (preflight + plan) on 32 sandbox hosts / on 4 of them, wall -
   goal <= 4; peak RSS of the controller's process tree on 32 (sampled every 0.2 s).
e. ``tfgpu-provision`` / ``ansible-playbook`` (our ansible.cfg) on the same no-op run as (b)
   - goal <= 1.05.

Prints a table and one JSON line; exits 1 naming every missed goal (2: could not run).
Needs root (sandbox), apt-cacher-ng, and the TensorFlow wheelhouse (cached after a first run,
else downloaded once by the first provisioning). Routes the hosts' apt through its own
apt-cacher-ng (cold for each scenario, behind the counting proxy) with
``-e tfgpu_apt_proxy=URL``: the same ``apt_proxy`` path on the hosts as
``tfgpu_apt_cache: controller``, whose start and stop by the CLI is tested in
``tests/integration/test_apt_cache.py``.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.fixtures.countproxy import CountingProxy  # noqa: E402
from tfgpu_provision import aptcache, wheelhouse  # noqa: E402

CLI = [sys.executable, "-m", "tfgpu_provision.cli"]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
FLEET = 4
BIG = 32
NOOP_ROUNDS = 2  # each round is 3 no-op runs of ~1.5 min on 2 cores: 3 rounds overrun 30 min
PLAN_ROUNDS = 3
SIMULATED_GPUS = 2
# The no-op rerun of (b) and (e): every converging stage, not verify (see the docstring).
NOOP_TAGS = "driver,cuda,cudnn,env"
GOALS = {"a": 1.1, "b": 0.5, "c": 1.2, "d": 4.0, "e": 1.05}
PREFIX = f"perfb{uuid.uuid4().hex[:4]}"


@dataclass
class Measure:
    wall: float
    cpu: float
    rc: int
    log: Path
    peak_rss_mb: float = 0.0


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def sandbox(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "tfgpu_provision.sandbox", *args],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=900,
    )


@contextmanager
def lab(name: str, hosts: int, *extra: str, keep_logs: Path | None = None) -> Iterator[Path]:
    """A sandbox lab for the block; its nodes' supervisor logs are copied to ``keep_logs``."""
    sandbox("up", "--name", name, "--hosts", str(hosts), *extra)
    root = Path.home() / ".cache/tfgpu-provision/sandbox" / name
    try:
        yield root / "inventory.yml"
    finally:
        if keep_logs is not None:
            for log in root.glob("*/supervisor.log"):
                shutil.copy(log, keep_logs / f"{log.parent.name}.supervisor.log")
        sandbox("down", "--name", name)


def _tree_rss_kb(root: int) -> int:
    """Summed RSS of ``root`` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        pid = int(entry.name)
        children.setdefault(int(fields.get("PPid", "0").strip()), []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def timed(
    argv: list[str], log: Path, *, env: dict[str, str] | None = None, sample_rss: bool = False
) -> Measure:
    """Run a command; wall time, CPU of its whole (waited-for) process tree, peak tree RSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log.parent)
        peak = 0
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.wait(0.2):
                peak = max(peak, _tree_rss_kb(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        if sample_rss:
            sampler.start()
        rc = proc.wait()
        stop.set()
        if sample_rss:
            sampler.join()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Measure(wall=wall, cpu=cpu, rc=rc, log=log, peak_rss_mb=peak / 1024)


def cli_env(work: Path) -> dict[str, str]:
    return dict(os.environ, TFGPU_RUN_DIR=str(work / "runs"), NO_COLOR="1", COLUMNS="200")


def wheelhouse_bytes() -> dict[str, int]:
    """Total size of each cached wheelhouse, by key."""
    root = wheelhouse.default_cache_root()
    found: dict[str, int] = {}
    if not root.is_dir():
        return found
    for path in root.iterdir():
        if path.is_dir() and not path.name.endswith(".partial"):
            try:
                wheels = wheelhouse.read_manifest(path)["wheels"]
            except wheelhouse.WheelhouseError:
                continue
            found[path.name] = sum(int(w.get("size", 0)) for w in wheels.values())
    return found


@dataclass
class Provisioning:
    hosts: int
    measure: Measure
    apt_upstream: int
    pip_upstream: int


def provision_fresh(
    hosts: int,
    upstream: CountingProxy,
    work: Path,
    after: Callable[[Provisioning, Path, str], None] | None = None,
) -> Provisioning:
    """A full `tfgpu-provision --inventory LAB` on fresh hosts, through a cold apt cache.

    ``after(result, inventory, proxy_url)`` runs while the lab and the cache are still up.
    """
    name = f"{PREFIX}n{hosts}"
    try:
        return _provision_fresh(name, hosts, upstream, work, after)
    finally:
        # A cold cache per scenario; its ~260 MB are not kept (the logs are).
        shutil.rmtree(work / f"acng-{hosts}", ignore_errors=True)


def _provision_fresh(
    name: str,
    hosts: int,
    upstream: CountingProxy,
    work: Path,
    after: Callable[[Provisioning, Path, str], None] | None,
) -> Provisioning:
    with (
        # No GPU here: verify runs on simulated devices (the report says so).
        lab(name, hosts, "--simulate-gpus", str(SIMULATED_GPUS), keep_logs=work) as inventory_path,
        aptcache.controller_cache(
            cache_dir=work / f"acng-{hosts}",
            log_dir=work / f"acng-{hosts}.logs",
            proxy=upstream.url,
        ) as url,
    ):
        mark = len(upstream.snapshot())
        wheels_before = wheelhouse_bytes()
        say(f"full provisioning of {hosts} fresh host(s)")
        measure = timed(
            [*CLI, "--inventory", name, "-e", f"tfgpu_apt_proxy={url}"],
            work / f"provision-{hosts}.log",
            env=cli_env(work),
        )
        apt = sum(r.bytes for r in upstream.snapshot()[mark:])
        grown = {k: v for k, v in wheelhouse_bytes().items() if k not in wheels_before}
        say(f"  exit {measure.rc}, {measure.wall:.0f} s wall, {measure.cpu:.1f} s CPU, apt {apt} B")
        check(measure, f"provisioning {hosts} fresh host(s)")
        result = Provisioning(hosts, measure, apt, sum(grown.values()))
        if after is not None:
            after(result, inventory_path, url)
        return result


def noop_runs(inventory_path: Path, name: str, url: str, work: Path) -> dict[str, list[float]]:
    """No-op reruns on converged hosts: tfgpu-provision, ansible-playbook ours and defaults."""
    defaults_cfg = work / "ansible-defaults.cfg"
    defaults_cfg.write_text(f"[defaults]\nroles_path = {REPO / 'roles'}\n")
    ours_env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    site = str(REPO / "playbooks/site.yml")
    playbook_args = ["-i", str(inventory_path), site, "--tags", NOOP_TAGS]
    playbook_args += ["-e", f"tfgpu_apt_proxy={url}"]
    walls: dict[str, list[float]] = {"tfgpu-provision": [], "ours": [], "defaults": []}
    for round_no in range(1, NOOP_ROUNDS + 1):
        say(f"no-op round {round_no}/{NOOP_ROUNDS}")
        m = timed(
            [*CLI, "--inventory", name, "--tags", NOOP_TAGS, "-e", f"tfgpu_apt_proxy={url}"],
            work / f"noop-cli-{round_no}.log",
            env=cli_env(work),
        )
        check(m, "tfgpu-provision no-op")
        walls["tfgpu-provision"].append(m.wall)
        m = timed(
            [ANSIBLE_PLAYBOOK, *playbook_args], work / f"noop-ours-{round_no}.log", env=ours_env
        )
        check(m, "ansible-playbook (our ansible.cfg) no-op")
        walls["ours"].append(m.wall)
        control = Path(tempfile.mkdtemp(prefix="cp-", dir=work))
        defaults_env = dict(
            os.environ, ANSIBLE_CONFIG=str(defaults_cfg), ANSIBLE_SSH_CONTROL_PATH_DIR=str(control)
        )
        m = timed(
            [ANSIBLE_PLAYBOOK, *playbook_args],
            work / f"noop-defaults-{round_no}.log",
            env=defaults_env,
        )
        check(m, "ansible-playbook (Ansible's defaults) no-op")
        walls["defaults"].append(m.wall)
        say("  " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in walls.items()))
    return walls


def plan_runs(work: Path) -> tuple[list[float], list[float], float]:
    name = f"{PREFIX}p{BIG}"
    small: list[float] = []
    big: list[float] = []
    peak = 0.0
    say(f"sandbox up --hosts {BIG}")
    with lab(name, BIG):
        limit = ",".join(f"{name}-{i}" for i in range(1, FLEET + 1))
        for round_no in range(1, PLAN_ROUNDS + 1):
            m = timed(
                [*CLI, "plan", "--inventory", name, "--limit", limit],
                work / f"plan-{FLEET}-{round_no}.log",
                env=cli_env(work),
            )
            check(m, f"plan on {FLEET} hosts")
            small.append(m.wall)
            m = timed(
                [*CLI, "plan", "--inventory", name],
                work / f"plan-{BIG}-{round_no}.log",
                env=cli_env(work),
                sample_rss=True,
            )
            check(m, f"plan on {BIG} hosts")
            big.append(m.wall)
            peak = max(peak, m.peak_rss_mb)
            say(f"  plan {FLEET}: {small[-1]:.1f} s, {BIG}: {big[-1]:.1f} s, peak {peak:.0f} MB")
    return small, big, peak


class BenchError(Exception):
    pass


def check(m: Measure, what: str) -> None:
    if m.rc != 0:
        tail = "\n".join(m.log.read_text(errors="replace").splitlines()[-20:])
        raise BenchError(f"{what} exited {m.rc}; log {m.log}:\n{tail}")


def main() -> int:
    # A plain `kill` still takes the labs down and stops the cache (finally blocks run).
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if os.geteuid() != 0:
        print("bench_fleet: needs root, like the sandbox", file=sys.stderr)
        return 2
    if shutil.which(aptcache.EXECUTABLE) is None:
        print("bench_fleet: apt-cacher-ng is not installed (make setup)", file=sys.stderr)
        return 2
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="tfgpu-bench-fleet-"))
    say(f"work directory {work}; {os.cpu_count()} cores")
    walls: dict[str, list[float]] = {}

    def on_converged(_result: Provisioning, inventory_path: Path, url: str) -> None:
        walls.update(noop_runs(inventory_path, f"{PREFIX}n{FLEET}", url, work))

    try:
        with CountingProxy(below=aptcache.MAX_PORT + 1) as upstream:
            one = provision_fresh(1, upstream, work)
            fleet = provision_fresh(FLEET, upstream, work, on_converged)
        small, big, peak_rss = plan_runs(work)
    except (BenchError, subprocess.CalledProcessError) as exc:
        print(f"bench_fleet: {exc}", file=sys.stderr)
        return 2

    wheel_sizes = wheelhouse_bytes()
    w = max(wheel_sizes.values(), default=0)  # the env's wheelhouse (one per stack here)
    up_one = one.apt_upstream + (one.pip_upstream or w)
    up_fleet = fleet.apt_upstream + (fleet.pip_upstream or w)
    naive_fleet = (one.apt_upstream + w) * FLEET
    ratios = {
        "a": up_fleet / up_one if up_one else float("inf"),
        "b": statistics.median(walls["ours"]) / statistics.median(walls["defaults"]),
        "c": (fleet.measure.cpu / FLEET) / one.measure.cpu,
        "d": statistics.median(big) / statistics.median(small),
        "e": statistics.median(walls["tfgpu-provision"]) / statistics.median(walls["ours"]),
    }
    labels = {
        "a": f"upstream bytes {FLEET} hosts / 1 host (caches)",
        "b": "no-op rerun: our ansible.cfg / defaults",
        "c": f"controller CPU per host {FLEET} / 1",
        "d": f"plan wall {BIG} hosts / {FLEET} hosts",
        "e": "no-op: tfgpu-provision / ansible-playbook",
    }
    missed = [
        f"({k}) {labels[k]} = {ratios[k]:.3f} (goal <= {GOALS[k]})"
        for k in GOALS
        if not ratios[k] <= GOALS[k]
    ]
    print()
    print(f"{'':3} {'measure':<46} {'ratio':>8} {'goal':>7}  result")
    for k in GOALS:
        ok = "ok" if ratios[k] <= GOALS[k] else "MISSED"
        print(f"({k}) {labels[k]:<46} {ratios[k]:>8.3f} {'<= ' + str(GOALS[k]):>7}  {ok}")
    print(
        f"    a: upstream 1 host {up_one / 1e6:.1f} MB (apt {one.apt_upstream / 1e6:.2f} MB), "
        f"{FLEET} hosts {up_fleet / 1e6:.1f} MB (apt {fleet.apt_upstream / 1e6:.2f} MB); "
        f"naive {naive_fleet / 1e6:.1f} MB = {naive_fleet / up_one if up_one else 0:.2f} x 1 host; "
        f"wheelhouse {w / 1e6:.0f} MB (downloaded this run: 1 host {one.pip_upstream}, "
        f"{FLEET} hosts {fleet.pip_upstream} B)"
    )
    print(
        "    b/e: medians "
        + ", ".join(
            f"{k} {statistics.median(v):.1f} s {[round(x, 1) for x in v]}" for k, v in walls.items()
        )
    )
    print(
        f"    c: 1 host {one.measure.cpu:.1f} s CPU / {one.measure.wall:.0f} s wall; "
        f"{FLEET} hosts {fleet.measure.cpu:.1f} s CPU / {fleet.measure.wall:.0f} s wall"
    )
    print(
        f"    d: plan {FLEET} hosts {[round(x, 1) for x in small]} s, {BIG} hosts "
        f"{[round(x, 1) for x in big]} s; peak controller RSS on {BIG} hosts {peak_rss:.0f} MB"
    )
    total = time.monotonic() - started
    print(f"    cores {os.cpu_count()}; bench took {total / 60:.1f} min; logs in {work}")
    print(
        json.dumps(
            {
                "cores": os.cpu_count(),
                "ratios": {k: round(v, 4) for k, v in ratios.items()},
                "goals": GOALS,
                "upstream_bytes": {
                    "one": up_one,
                    "fleet": up_fleet,
                    "naive_fleet": naive_fleet,
                    "apt_one": one.apt_upstream,
                    "apt_fleet": fleet.apt_upstream,
                    "wheelhouse": w,
                    "pip_downloaded_one": one.pip_upstream,
                    "pip_downloaded_fleet": fleet.pip_upstream,
                },
                "noop_wall_s": walls,
                "provision": {
                    "one": {"cpu_s": one.measure.cpu, "wall_s": one.measure.wall},
                    "fleet": {"cpu_s": fleet.measure.cpu, "wall_s": fleet.measure.wall},
                },
                "plan_wall_s": {str(FLEET): small, str(BIG): big},
                "peak_rss_mb": peak_rss,
                "bench_s": round(total, 1),
                "missed": missed,
            }
        )
    )
    for line in missed:
        print(f"goal missed: {line}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
