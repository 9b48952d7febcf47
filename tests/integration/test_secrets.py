"""Secrets never reach artifacts, logs or reports.

A run on a sandbox host uses a vault-encrypted become password and a private package index
whose URL carries a token (also vaulted): the index below refuses requests without that
token, so the run only succeeds if the token was really used. Then every file of the run
directory, the fact cache and the host's env tree is searched for both secrets.
"""

from __future__ import annotations

import base64
import functools
import http.server
import os
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

pytestmark = pytest.mark.integration

LAB = "sec"
BIN = Path(sys.executable).parent


class _TokenIndex(http.server.SimpleHTTPRequestHandler):
    """A PEP 503 index (test fixture) that answers only requests carrying the token."""

    token = ""
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        expected = "Basic " + base64.b64encode(f"tfgpu:{self.token}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="fixture"')
            self.end_headers()
            return
        self.seen.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    root = tmp_path_factory.mktemp("index")
    wheels = root / "simple" / "six"
    wheels.mkdir(parents=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            str(wheels),
            "six==1.17.0",
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("*.whl")
    (wheels / "index.html").write_text(f'<a href="{wheel.name}">{wheel.name}</a>\n')
    token = "tok-" + secrets.token_hex(12)
    _TokenIndex.token = token
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_TokenIndex, directory=str(root))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://tfgpu:{token}@127.0.0.1:{server.server_address[1]}/simple/", token
    server.shutdown()


def _vault(value: str, password_file: Path) -> str:
    out = subprocess.run(
        [
            str(BIN / "ansible-vault"),
            "encrypt_string",
            "--vault-password-file",
            str(password_file),
            value,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip()


def _files(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            yield path


def test_vaulted_become_password_and_index_token_never_leak(
    index: tuple[str, str], tmp_path: Path
) -> None:
    if os.geteuid() != 0 or not shutil.which("debootstrap"):
        pytest.skip("the sandbox needs root and debootstrap (make setup)")
    url, token = index
    become_password = "bp-" + secrets.token_hex(12)
    password_file = tmp_path / "vault-password"
    password_file.write_text(secrets.token_hex(16) + "\n")
    runs = tmp_path / "runs"
    env = dict(os.environ, TFGPU_RUN_DIR=str(runs), COLUMNS="200")
    cli = [sys.executable, "-m", "tfgpu_provision.cli"]
    subprocess.run(
        [*cli, "sandbox", "up", "--name", LAB, "--hosts", "1"], check=True, env=env, timeout=600
    )
    try:
        lab_inventory = yaml.safe_load(
            (Path.home() / f".cache/tfgpu-provision/sandbox/{LAB}/inventory.yml").read_text()
        )
        inventory_dir = tmp_path / "inventory"
        (inventory_dir / "group_vars").mkdir(parents=True)
        (inventory_dir / "hosts.yml").write_text(yaml.safe_dump(lab_inventory))
        (inventory_dir / "group_vars" / "gpu_nodes.yml").write_text(
            "ansible_become: true\n"
            "ansible_become_method: sudo\n"
            f"ansible_become_password: {_vault(become_password, password_file)}\n"
            f"tfgpu_pip_index_url: {_vault(url, password_file)}\n"
            "tfgpu_wheelhouse: false\n"
        )
        proc = subprocess.run(
            [
                *cli,
                "--inventory",
                str(inventory_dir),
                "--tags",
                "env",
                "--vault-password-file",
                str(password_file),
                "-e",
                '{"tf_env_requirements": ["six==1.17.0"]}',
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=1200,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
        assert any("six" in path for path in _TokenIndex.seen), "the private index was not used"

        host_tree = tmp_path / "host-files"
        subprocess.run(
            [
                *cli,
                "sandbox",
                "ssh",
                f"{LAB}-1",
                "--",
                "tar",
                "-C",
                "/",
                "-cf",
                "/tmp/tfgpu-secrets.tar",
                "opt/tfgpu",
                "usr/local/bin/tfgpu-env",
            ],
            check=True,
            env=env,
            capture_output=True,
        )
        searched = [runs, Path.home() / ".cache/tfgpu-provision/facts"]
        overlay = Path.home() / f".cache/tfgpu-provision/sandbox/{LAB}"
        tars = list(overlay.rglob("tfgpu-secrets.tar"))
        assert tars, "could not copy the host's env tree out"
        host_tree.mkdir()
        subprocess.run(["tar", "-C", str(host_tree), "-xf", str(tars[0])], check=True)
        searched.append(host_tree)
        leaks = []
        count = 0
        for root in searched:
            for path in _files(root):
                count += 1
                data = path.read_bytes()
                for name, secret in (("index token", token), ("become password", become_password)):
                    if secret.encode() in data:
                        leaks.append(f"{name} in {path}")
        assert count > 20, "the search found almost nothing to search"
        assert not leaks, leaks
        assert token not in proc.stdout + proc.stderr
        assert become_password not in proc.stdout + proc.stderr
    finally:
        subprocess.run(
            [*cli, "sandbox", "down", "--name", LAB], env=env, capture_output=True, check=False
        )
