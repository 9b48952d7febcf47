"""Fault 5, a corrupted download, through the CLI (slow tier: it builds an env on a host).

The controller's wheelhouse is the download the hosts get their wheels from. To keep it
small, the run points tfgpu_pip_index_url at a local index holding a stand-in
``tensorflow-2.21.0`` wheel (a few hundred bytes) and keeps the wheelhouse cache in a private
HOME. The test builds the wheelhouse once, tampers with the wheel, and then:

- with the index up: the run catches the hash mismatch before serving anything, downloads the
  wheel again, and the host installs the good one (exit 0);
- with the index down: the run stops before any host installs anything (exit 1) with the
  mismatch and the failed download named; with the index back, the rerun converges.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import Server
from tests.faults.helpers import Lab, Run, tfgpu, write_inventory
from tfgpu_provision import wheelhouse

pytestmark = pytest.mark.slow

HOST = "flt-a-1"
REQUIREMENT = "tensorflow[and-cuda]==2.21.0"  # what the preflight resolves for bookworm
WHEEL = "tensorflow-2.21.0-py3-none-any.whl"
MARKER = "tfgpu fault-suite stand-in"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_stand_in(path: Path) -> None:
    """A pure-Python 'tensorflow' 2.21.0 wheel with an empty and-cuda extra."""
    info = "tensorflow-2.21.0.dist-info"
    files = {
        "tensorflow/__init__.py": f'__version__ = "2.21.0"  # {MARKER}\n'.encode(),
        f"{info}/METADATA": b"Metadata-Version: 2.1\nName: tensorflow\nVersion: 2.21.0\n"
        b"Provides-Extra: and-cuda\n",
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tfgpu-faults\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = [_record_line(name, data) for name, data in files.items()] + [f"{info}/RECORD,,"]
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr(f"{info}/RECORD", "\n".join(record) + "\n")


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("index")
    project = root / "simple" / "tensorflow"
    project.mkdir(parents=True)
    build_stand_in(project / WHEEL)
    (project / "index.html").write_text(f'<html><body><a href="{WHEEL}">{WHEEL}</a></body></html>')
    server = Server(root)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def setup(flt_a: Lab, index: Server, tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("download-fault")
    home = work / "home"
    cache = home / ".cache" / "tfgpu-provision" / "wheelhouse"
    url = f"{index.url}simple/"
    built = wheelhouse.build(REQUIREMENT, "3.11", cache_root=cache, index_url=url)
    inventory = write_inventory(
        work / "hosts.yml", {HOST: flt_a.host_vars(HOST)}, flt_a.group_vars()
    )
    good = wheelhouse.file_sha256(built / WHEEL)
    return {"work": work, "home": home, "url": url, "wheelhouse": built, "good": good,
            "lab": flt_a, "inventory": inventory}  # fmt: skip


def tamper(setup: dict) -> None:
    with (setup["wheelhouse"] / WHEEL).open("ab") as fh:
        fh.write(b"tampered")
    assert wheelhouse.file_sha256(setup["wheelhouse"] / WHEEL) != setup["good"]


def env_run(setup: dict, *extra: str) -> Run:
    return tfgpu("--inventory", str(setup["inventory"]), "--tags", "env",
                 "-e", f"tfgpu_pip_index_url={setup['url']}", *extra,
                 run_root=setup["work"] / "runs", env={"HOME": str(setup["home"])})  # fmt: skip


def installed_marker(lab: Lab) -> str:
    return lab.sh(
        HOST, "cat /opt/tfgpu/envs/tf-gpu/lib/python3.11/site-packages/tensorflow/__init__.py"
    )


def test_tampered_wheel_is_caught_and_downloaded_again(setup: dict) -> None:
    tamper(setup)
    run = env_run(setup)
    assert run.rc == 0, run.output[-4000:]
    assert "wheelhouse failed its hash check, downloading again" in run.output
    assert f"{WHEEL}: sha256" in run.output and "does not match the manifest's" in run.output
    assert wheelhouse.file_sha256(setup["wheelhouse"] / WHEEL) == setup["good"]
    assert MARKER in installed_marker(setup["lab"])
    assert setup["lab"].dpkg_audit(HOST) == ""


def test_tampered_wheel_with_the_index_down_stops_before_any_host(
    setup: dict, index: Server
) -> None:
    tamper(setup)
    before = setup["lab"].sh(HOST, "readlink /opt/tfgpu/envs/tf-gpu || true")
    index.stop()
    try:
        run = env_run(setup)
    finally:
        index.start()  # same port: the rerun below finds it again
    assert run.rc == 1, run.output[-4000:]
    assert "wheelhouse failed its hash check, downloading again" in run.output
    assert f"error: pip download of {REQUIREMENT} for Python 3.11 failed" in run.output
    assert not (setup["wheelhouse"] / WHEEL).exists(), "the tampered wheel was kept"
    assert setup["lab"].sh(HOST, "readlink /opt/tfgpu/envs/tf-gpu || true") == before

    rerun = env_run(setup)
    assert rerun.rc == 0, rerun.output[-4000:]
    assert wheelhouse.file_sha256(setup["wheelhouse"] / WHEEL) == setup["good"]
    assert MARKER in installed_marker(setup["lab"])
