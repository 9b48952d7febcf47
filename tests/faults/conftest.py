"""Fixtures of the fault suite: two sandbox labs shared by every fault module, brought up once
per session and always brought down.

- ``flt-a``: 3 Debian 12 (bookworm, Python 3.11) hosts;
- ``flt-py``: 1 Debian 13 (trixie, Python 3.13) host, the host whose Python is out of range.

Each module writes its own inventory over these hosts (``helpers.write_inventory``) so a
fault can be given to one host (a closed SSH port, a host var) while the others stay healthy.
"""

from __future__ import annotations

import http.server
import shutil
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults import helpers
from tests.faults.helpers import Lab


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every fault test drives sandbox hosts: mark them all, and skip them visibly when the
    # machine cannot run the sandbox.
    reason = helpers.missing_support()
    for item in items:
        if "tests/faults/" not in str(item.fspath).replace("\\", "/"):
            continue
        item.add_marker(pytest.mark.integration)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def flt_a() -> Iterator[Lab]:
    lab = Lab.up("flt-a", hosts=3)
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="session")
def flt_py() -> Iterator[Lab]:
    lab = Lab.up("flt-py", hosts=1, suite="trixie")
    try:
        yield lab
    finally:
        lab.down()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class Server:
    """A directory served over HTTP on 127.0.0.1 (sandbox hosts share the loopback)."""

    def __init__(self, directory: Path, port: int = 0) -> None:
        self.directory = directory
        self._httpd: socketserver.TCPServer | None = None
        self.port = port
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        handler = lambda *a: _Quiet(*a, directory=str(self.directory))  # noqa: E731
        http.server.ThreadingHTTPServer.allow_reuse_address = True
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        httpd.daemon_threads = True
        self.port = int(httpd.server_address[1])
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        self._httpd = httpd

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


def _cached_wheel(pattern: str) -> Path | None:
    root = Path.home() / ".cache" / "tfgpu-provision" / "wheelhouse"
    return next(iter(sorted(root.glob(f"*/{pattern}"))), None)


@pytest.fixture(scope="session")
def small_wheels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """numpy and six wheels for Python 3.11, served as a pip find-links directory.

    Taken from the controller's cached TensorFlow wheelhouse when it is there, else
    downloaded once (about 17 MB). The env faults install these instead of TensorFlow.
    """
    directory = tmp_path_factory.mktemp("small-wheels")
    for name, pattern in (
        ("numpy==2.4.6", "numpy-2.4.6-cp311-*.whl"),
        ("six==1.17.0", "six-1.17.0-*.whl"),
    ):
        cached = _cached_wheel(pattern)
        if cached is not None:
            shutil.copyfile(cached, directory / cached.name)
            continue
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64",
             "-d", str(directory), name],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            pytest.skip(f"cannot get the {name} wheel for the env faults: {proc.stderr[-500:]}")
    server = Server(directory)
    try:
        yield server
    finally:
        server.stop()
