"""The controller wheelhouse with a tiny real requirement from the package index.

The download tests need the package index (the project's test machines reach it); `six` is one
small pure-Python wheel, so a build takes a second or two.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tfgpu_provision import wheelhouse
from tfgpu_provision.wheelhouse import WheelhouseError

REQUIREMENT = "six==1.17.0"
PYTHON = "3.11"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One download for the whole module; tests that damage it work on a copy."""
    return wheelhouse.build(REQUIREMENT, PYTHON, cache_root=tmp_path_factory.mktemp("cache"))


def copy_of(built: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A private cache holding the built wheelhouse under its key: (cache_root, wheelhouse)."""
    root = tmp_path / "cache"
    shutil.copytree(built, root / built.name)
    return root, root / built.name


def the_wheel(path: Path) -> Path:
    (wheel,) = path.glob("six-*.whl")
    return wheel


def test_build_downloads_the_wheel_and_records_its_hash(built: Path) -> None:
    manifest = json.loads((built / "manifest.json").read_text())
    wheel = the_wheel(built)
    assert wheel.name.startswith("six-1.17.0-")
    assert manifest["wheels"][wheel.name]["sha256"] == wheelhouse.file_sha256(wheel)
    assert manifest["wheels"][wheel.name]["size"] == wheel.stat().st_size
    assert manifest["requirements"] == [REQUIREMENT]
    assert manifest["python_version"] == PYTHON
    assert built.name == manifest["key"]
    assert not list(built.parent.glob("*.partial"))


def test_key_changes_with_each_input() -> None:
    base = wheelhouse.wheelhouse_key([REQUIREMENT], PYTHON, ["manylinux2014_x86_64"])
    assert base == wheelhouse.wheelhouse_key([REQUIREMENT], PYTHON, ["manylinux2014_x86_64"])
    others = {
        wheelhouse.wheelhouse_key(["six==1.16.0"], PYTHON, ["manylinux2014_x86_64"]),
        wheelhouse.wheelhouse_key([REQUIREMENT], "3.12", ["manylinux2014_x86_64"]),
        wheelhouse.wheelhouse_key([REQUIREMENT], PYTHON, ["linux_x86_64"]),
        wheelhouse.wheelhouse_key(
            [REQUIREMENT], PYTHON, ["manylinux2014_x86_64"], "https://mirror.invalid/simple"
        ),
    }
    assert base not in others
    assert len(others) == 4


def test_reuse_does_not_download_again(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, path = copy_of(built, tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in path.iterdir()}

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("a valid cached wheelhouse was downloaded again")

    monkeypatch.setattr(wheelhouse, "_download", no_download)
    messages: list[str] = []
    again = wheelhouse.build(REQUIREMENT, PYTHON, cache_root=root, progress=messages.append)
    assert again == path
    assert {p.name: p.stat().st_mtime_ns for p in path.iterdir()} == before
    assert any("reused" in m for m in messages)


def test_unchanged_wheelhouse_is_reused_without_hashing_again(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, path = copy_of(built, tmp_path)
    wheelhouse.build(REQUIREMENT, PYTHON, cache_root=root)  # full hash check; stamps the files

    def no_hashing(_path: Path) -> str:
        raise AssertionError("an unchanged wheelhouse was hashed again")

    monkeypatch.setattr(wheelhouse, "file_sha256", no_hashing)
    messages: list[str] = []
    assert wheelhouse.build(REQUIREMENT, PYTHON, cache_root=root, progress=messages.append) == path
    assert any("no file changed" in m for m in messages)


def test_rewritten_wheel_with_its_old_size_and_mtime_is_still_caught(
    built: Path, tmp_path: Path
) -> None:
    root, path = copy_of(built, tmp_path)
    wheelhouse.build(REQUIREMENT, PYTHON, cache_root=root)  # stamps the verified files
    wheel = the_wheel(path)
    before = wheel.stat()
    with wheel.open("r+b") as handle:  # same size, different bytes
        handle.seek(200)
        handle.write(b"X" * 16)
    os.utime(wheel, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the old mtime back
    assert wheel.stat().st_size == before.st_size
    assert wheel.stat().st_mtime_ns == before.st_mtime_ns
    with pytest.raises(WheelhouseError) as caught:
        wheelhouse.build(REQUIREMENT, PYTHON, cache_root=root, on_corrupt="error")
    assert wheel.name in str(caught.value)


def test_corrupted_wheel_is_named_when_errors_are_asked_for(built: Path, tmp_path: Path) -> None:
    root, path = copy_of(built, tmp_path)
    wheel = the_wheel(path)
    with wheel.open("ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(WheelhouseError) as caught:
        wheelhouse.build(REQUIREMENT, PYTHON, cache_root=root, on_corrupt="error")
    assert wheel.name in str(caught.value)
    assert "does not match" in str(caught.value)


def test_corrupted_wheel_is_downloaded_again_by_default(built: Path, tmp_path: Path) -> None:
    root, path = copy_of(built, tmp_path)
    wheel = the_wheel(path)
    good = wheel.read_bytes()
    wheel.write_bytes(good[:100])
    messages: list[str] = []
    again = wheelhouse.build(REQUIREMENT, PYTHON, cache_root=root, progress=messages.append)
    assert again == path
    assert the_wheel(again).read_bytes() == good
    assert wheelhouse.problems(again) == []
    assert any(wheel.name in m for m in messages)


def test_missing_and_extra_files_are_problems(built: Path, tmp_path: Path) -> None:
    _, path = copy_of(built, tmp_path)
    wheel = the_wheel(path)
    stray = path / "evil-1.0-py3-none-any.whl"
    stray.write_bytes(b"not a wheel")
    wheel.unlink()
    found = wheelhouse.problems(path)
    assert any(wheel.name in p and "missing" in p for p in found)
    assert any(stray.name in p and "not in the manifest" in p for p in found)


def test_serve_refuses_a_tampered_wheelhouse(built: Path, tmp_path: Path) -> None:
    _, path = copy_of(built, tmp_path)
    with the_wheel(path).open("ab") as handle:
        handle.write(b"x")
    with pytest.raises(WheelhouseError), wheelhouse.serve(path):
        pass


def test_served_wheelhouse_installs_with_no_index(built: Path, tmp_path: Path) -> None:
    requests: list[str] = []
    with wheelhouse.serve(built, requests=requests) as url:
        assert url.startswith("http://127.0.0.1:")
        pip = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check"]
        proc = subprocess.run(
            [*pip, "--no-index", "--find-links", url, "--dest", str(tmp_path / "got"), REQUIREMENT],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (got,) = (tmp_path / "got").glob("six-*.whl")
    assert got.read_bytes() == the_wheel(built).read_bytes()
    assert any(r.endswith(".whl") for r in requests)
    # The server is gone after the block.
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)


@contextlib.contextmanager
def counting_index(wheel: Path, root: Path, requests: list[str]) -> Iterator[str]:
    """A local PEP 503 index holding one wheel, standing in for the package index upstream.

    Every request path is recorded in ``requests``: what left the controller for "upstream".
    """
    project = root / "simple" / "six"
    project.mkdir(parents=True)
    shutil.copy(wheel, project / wheel.name)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (project / "index.html").write_text(f'<a href="{wheel.name}#sha256={digest}">{wheel.name}</a>')

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    finally:
        server.shutdown()
        server.server_close()


def test_hosts_install_from_the_wheelhouse_and_never_reach_the_index(
    built: Path, tmp_path: Path
) -> None:
    upstream: list[str] = []
    with counting_index(the_wheel(built), tmp_path / "index", upstream) as index_url:
        cache = tmp_path / "cache"
        # --isolated: this machine's pip config (extra indexes, find-links) stays out of it.
        build = functools.partial(
            wheelhouse.build, cache_root=cache, index_url=index_url, pip_args=["--isolated"]
        )
        path = build(REQUIREMENT, PYTHON)
        assert any(r.endswith(".whl") for r in upstream), upstream
        after_build = list(upstream)

        served: list[str] = []
        with wheelhouse.serve(path, requests=served) as url:
            for host in ("host-1", "host-2"):
                pip = [sys.executable, "-m", "pip", "install", "--isolated", "--no-index"]
                proc = subprocess.run(
                    [*pip, "--find-links", url, "--target", str(tmp_path / host), REQUIREMENT],
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
                assert proc.returncode == 0, proc.stdout + proc.stderr
                assert (tmp_path / host / "six.py").is_file()
                assert upstream == after_build, f"{host} reached the index: {upstream}"
        assert sum(r.endswith(".whl") for r in served) == 2, served

        # The next run (another fleet, same stack) reuses the wheelhouse: nothing upstream.
        assert build(REQUIREMENT, PYTHON) == path
        assert upstream == after_build


def test_failed_download_leaves_no_wheelhouse_and_hides_the_index(tmp_path: Path) -> None:
    # Nothing listens on port 9; the name exists on no index (a machine's pip config may add
    # extra indexes or find-links, which must not rescue this download either).
    index = "http://user:s3cret@127.0.0.1:9/simple"
    missing = "tfgpu-provision-no-such-package==1.0"
    with pytest.raises(WheelhouseError) as caught:
        wheelhouse.build(
            missing, PYTHON, cache_root=tmp_path, index_url=index, pip_args=["--retries=0"]
        )
    assert missing in str(caught.value)
    assert "s3cret" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_manylinux_platforms_cover_the_glibc_range() -> None:
    tags = wheelhouse.manylinux_platforms("2.36", "x86_64")
    assert tags[0] == "manylinux_2_36_x86_64"
    assert "manylinux_2_17_x86_64" in tags
    assert "manylinux_2_16_x86_64" not in tags
    assert "manylinux2014_x86_64" in tags
    with pytest.raises(WheelhouseError):
        wheelhouse.manylinux_platforms("2.5")
