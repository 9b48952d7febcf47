"""The controller's apt cache on two sandbox hosts: a second host's install stays off the uplink.

One lab of two hosts and one apt-cacher-ng (``aptcache.controller_cache``) whose upstream is
a counting proxy (``tests/fixtures/countproxy.py``): every request that leaves the controller
for the archive is recorded there. The packages stage (``apt_proxy`` role) points both hosts'
apt at the cache; then ``hello`` is installed on host 1 (its .deb is fetched upstream once)
and on host 2 (served from the cache: no upstream request for a .deb). Also: the role is
idempotent, removes its file when no proxy is set, and apt goes direct once the cache has
stopped. And through the CLI: ``tfgpu-provision -e tfgpu_apt_cache=controller`` starts its own
cache for the run, points the hosts at it, stops it afterwards, and a rerun changes nothing.
A few minutes on 2 cores; downloads ~60 kB from Debian's archive.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.countproxy import CountingProxy
from tests.integration.sandbox_cli import sandbox
from tfgpu_provision import aptcache, runner

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "hello"
CONF = "/etc/apt/apt.conf.d/99tfgpu-proxy"
DETECT = "/usr/local/sbin/tfgpu-apt-proxy-detect"


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "apt cache integration tests need root (sandbox namespaces, overlay mounts)"
    for tool in ("debootstrap", aptcache.EXECUTABLE):
        if shutil.which(tool) is None:
            return f"apt cache integration tests need {tool} (make setup installs it)"
    return None


@dataclass
class Lab:
    name: str
    hosts: list[str]
    inventory: Path
    ssh: dict[str, list[str]]

    def on(self, host: str, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.ssh[host], command], capture_output=True, text=True, timeout=120, check=False
        )


@dataclass
class Cache:
    url: str
    upstream: CountingProxy
    log_dir: Path


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    from tfgpu_provision.sandbox import lab as labs

    name = f"perfapt{uuid.uuid4().hex[:5]}"
    sandbox("up", "--name", name, "--hosts", "2")
    try:
        loaded = labs.Lab.load(name)
        hosts = [n.name for n in loaded.nodes]
        ssh = {n.name: loaded.ssh_argv(n.name) for n in loaded.nodes}
        inv = Path.home() / ".cache/tfgpu-provision/sandbox" / name / "inventory.yml"
        yield Lab(name=name, hosts=hosts, inventory=inv, ssh=ssh)
    finally:
        sandbox("down", "--name", name)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cache]:
    root = tmp_path_factory.mktemp("aptcache")
    # apt-cacher-ng 3.7 cannot use an upstream proxy on a port of 32768 or above.
    with (
        CountingProxy(below=aptcache.MAX_PORT + 1) as upstream,
        aptcache.controller_cache(
            cache_dir=root / "cache", log_dir=root / "logs", proxy=upstream.url
        ) as url,
    ):
        yield Cache(url=url, upstream=upstream, log_dir=root / "logs")


def _playbook(tmp_path: Path, body: str) -> Path:
    path = tmp_path / f"play-{uuid.uuid4().hex[:6]}.yml"
    path.write_text(textwrap.dedent(body).format(repo=REPO))
    return path


PACKAGES_STAGE = """\
    ---
    - name: Guard
      ansible.builtin.import_playbook: {repo}/playbooks/guard.yml
    - name: Preflight
      ansible.builtin.import_playbook: {repo}/playbooks/stages/preflight.yml
    - name: Packages
      ansible.builtin.import_playbook: {repo}/playbooks/stages/packages.yml
    """

INSTALL = f"""\
    ---
    - name: Install a package through apt
      hosts: gpu_nodes
      gather_facts: false
      tasks:
        - name: Install {PACKAGE}
          ansible.builtin.apt:
            name: {PACKAGE}
            state: present
    """


def run(
    lab: Lab, tmp_path: Path, playbook: Path, limit: str | None = None, **extravars: object
) -> runner.RunResult:
    request = runner.RunRequest(
        playbook=str(playbook),
        inventory=lab.inventory,
        limit=limit,
        extravars=dict(extravars),
        run_root=tmp_path / "runs",
    )
    result = runner.run(request)
    assert result.status == "successful", (result.artifacts / "stdout").read_text()[-4000:]
    return result


def changed(result: runner.RunResult, host: str) -> int:
    return result.model.hosts[host].changed


def deb_fetches(cache: Cache) -> list[str]:
    return [r.url for r in cache.upstream.matching(".deb")]


def test_packages_stage_points_apt_at_the_cache_and_changes_nothing_twice(
    lab: Lab, cache: Cache, tmp_path: Path
) -> None:
    play = _playbook(tmp_path, PACKAGES_STAGE)
    opts = {"tfgpu_apt_cache": "controller", "tfgpu_apt_cache_url": cache.url}
    first = run(lab, tmp_path, play, **opts)
    for host in lab.hosts:
        assert changed(first, host) >= 1
        conf = lab.on(host, f"cat {CONF}").stdout
        assert f'Acquire::http::Proxy "{cache.url}";' in conf, conf
        # The hook sees the running cache and hands apt its URL.
        assert lab.on(host, f"{DETECT} http://example.invalid/").stdout.strip() == cache.url
        effective = lab.on(host, "apt-config dump Acquire::http::Proxy").stdout
        assert f'"{cache.url}"' in effective, effective
    second = run(lab, tmp_path, play, **opts)
    assert [changed(second, h) for h in lab.hosts] == [0, 0]


def test_second_host_install_makes_no_upstream_request_for_the_deb(
    lab: Lab, cache: Cache, tmp_path: Path
) -> None:
    first_host, second_host = lab.hosts
    for host in lab.hosts:
        assert lab.on(host, f"dpkg -s {PACKAGE}").returncode != 0, f"{PACKAGE} already on {host}"
    install = _playbook(tmp_path, INSTALL)

    run(lab, tmp_path, install, limit=first_host)
    fetched = deb_fetches(cache)
    assert [u for u in fetched if f"/{PACKAGE}_" in u], f"host 1 did not go upstream: {fetched}"
    assert lab.on(first_host, f"dpkg -s {PACKAGE}").returncode == 0
    upstream_before = cache.upstream.snapshot()

    run(lab, tmp_path, install, limit=second_host)
    assert lab.on(second_host, f"dpkg -s {PACKAGE}").returncode == 0
    new = cache.upstream.snapshot()[len(upstream_before) :]
    assert [r.url for r in new if r.url.endswith(".deb")] == [], new
    # ... and it did come through the cache: two hosts served, one upstream fetch.
    served = [
        t
        for t in aptcache.read_transfers(cache.log_dir)
        if t.path.endswith(".deb") and f"/{PACKAGE}_" in t.path
    ]
    assert [t.kind for t in served].count("I") == 1, served
    assert [t.kind for t in served].count("O") == 2, served


def test_without_a_proxy_the_file_goes_and_apt_goes_direct_after_the_cache(
    lab: Lab, tmp_path: Path
) -> None:
    play = _playbook(tmp_path, PACKAGES_STAGE)
    host = lab.hosts[0]
    # A cache that has stopped: the hook sends apt direct while the file is still there.
    with aptcache.controller_cache(cache_dir=tmp_path / "c", proxy=None) as url:
        run(lab, tmp_path, play, limit=host, tfgpu_apt_cache="controller", tfgpu_apt_cache_url=url)
        assert lab.on(host, f"{DETECT} http://example.invalid/").stdout.strip() == url
    assert lab.on(host, f"{DETECT} http://example.invalid/").stdout.strip() == "DIRECT"

    removed = run(lab, tmp_path, play, limit=host, tfgpu_apt_cache="none")
    assert changed(removed, host) >= 1
    assert lab.on(host, f"test -e {CONF} || test -e {DETECT}").returncode != 0
    again = run(lab, tmp_path, play, limit=host, tfgpu_apt_cache="none")
    assert changed(again, host) == 0


def _cli(lab: Lab, tmp_path: Path, home: Path, *args: str) -> tuple[str, dict[str, object]]:
    """One `tfgpu-provision` run against the lab; its output and its summary.json."""
    runs = tmp_path / f"runs-{uuid.uuid4().hex[:6]}"
    # HOME in tmp_path: the CLI's own cache, port file and fact cache live under ~/.cache.
    env = dict(os.environ, HOME=str(home), TFGPU_RUN_DIR=str(runs), NO_COLOR="1", COLUMNS="200")
    proc = subprocess.run(
        [sys.executable, "-m", "tfgpu_provision.cli", "--inventory", str(lab.inventory), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (summary,) = runs.glob("*/summary.json")
    return proc.stdout, json.loads(summary.read_text())


def test_cli_runs_its_own_cache_for_the_run_only(lab: Lab, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    args = ("--tags", "packages", "-e", "tfgpu_apt_cache=controller")
    out, _ = _cli(lab, tmp_path, home, *args)
    found = re.search(r"apt cache: running on (http://\S+)", out)
    assert found, out
    url = found.group(1)
    for host in lab.hosts:
        assert f'Acquire::http::Proxy "{url}";' in lab.on(host, f"cat {CONF}").stdout
    port = urllib.parse.urlsplit(url).port
    assert port is not None
    with pytest.raises(OSError):  # stopped with the run: nothing listens any more
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    port_file = home / ".cache/tfgpu-provision/apt-cacher-ng.port"
    assert port_file.read_text().strip() == str(port)

    out, summary = _cli(lab, tmp_path, home, *args)
    assert f"apt cache: running on {url} " in out, out
    hosts = summary["hosts"]
    assert isinstance(hosts, list)
    assert {h["name"]: h["changed"] for h in hosts} == dict.fromkeys(lab.hosts, 0)
