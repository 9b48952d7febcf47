"""The tf_env role's conda path and its input checks, run for real on this machine.

Conda channels are not reachable from the project's test machines, so the conda path runs
against FIXTURES that say they are fixtures: a fake "Miniforge installer" (a shell script
served over a local http.server, the way a mirror would serve the real one) that installs a
fake `conda`, which records its arguments and makes a plain venv at the prefix it is given.
What is real: the role's tasks, the checksum check, the rendered environment.yml, the state
file, the link switch, the wrapper and idempotence. Everything lands under tmp_path.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ansible_runner
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
HOST_PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"

FAKE_INSTALLER = """#!/bin/bash
# FIXTURE, not Miniforge: records that it ran and installs a fake conda into -p PREFIX.
set -eu
prefix=""
while [ $# -gt 0 ]; do case "$1" in -p) prefix="$2"; shift 2;; *) shift;; esac; done
echo ran > "$(dirname "$prefix")/installer-ran"
mkdir -p "$prefix/bin"
cat > "$prefix/bin/conda" <<'EOS'
#!/bin/bash
# FIXTURE, not conda: records its arguments, makes a plain venv at --prefix.
set -eu
echo "$@" >> "$(dirname "$(dirname "$0")")/conda-calls"
echo "PIP_CERT=${PIP_CERT:-}" > "$(dirname "$(dirname "$0")")/conda-env"
prefix=""
while [ $# -gt 0 ]; do case "$1" in --prefix) prefix="$2"; shift 2;; *) shift;; esac; done
/usr/bin/python3 -m venv --without-pip "$prefix"
EOS
chmod +x "$prefix/bin/conda"
"""

PLAYBOOK = """
- name: Run tf_env on this machine
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: tf_env
"""


def stack(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "tensorflow": "2.21.0",
        "python": {"min": "3.10", "max": "3.13", "selected": "3.13"},
        "cuda": "12.5",
        "cudnn": "9.3",
        "sources": {"driver": "distro", "cuda": "pip", "cudnn": "pip", "env": "conda"},
        "pip_requirement": "tensorflow[and-cuda]==2.21.0",
    }
    base.update(overrides)
    return base


@pytest.fixture(scope="module")
def installer_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(URL, sha256) of the fake installer, served over HTTP on a free local port."""
    directory = tmp_path_factory.mktemp("mirror")
    (directory / "Miniforge3-Linux-x86_64.sh").write_text(FAKE_INSTALLER)
    sha = hashlib.sha256(FAKE_INSTALLER.encode()).hexdigest()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/Miniforge3-Linux-x86_64.sh"
        yield url, sha
    finally:
        server.shutdown()
        server.server_close()


class Lab:
    """A tmp directory standing in for a host's /opt/tfgpu and /usr/local/bin."""

    def __init__(self, tmp: Path, url: str, sha: str) -> None:
        self.root = tmp / "host"
        self.root.mkdir()
        self.work = tmp / "runner"
        self.work.mkdir()
        root = self.root
        self.vars: dict[str, Any] = {
            "ansible_python_interpreter": "/usr/bin/python3",
            "tfgpu_host": {
                "os": {"family": "Debian", "distribution": "Debian", "version": "12"},
            },
            "tfgpu_stack": stack(),
            "tfgpu_options": {
                "tfgpu_env_name": "tf-gpu",
                "tfgpu_python_version": None,
                "tfgpu_ca_certificates": [],
                "tfgpu_pip_index_url": None,
                "tfgpu_conda_channels": ["conda-forge", "https://conda-mirror.example.org/nvidia"],
            },
            "tf_env_root": str(root / "envs"),
            "tf_env_conda_root": str(root / "conda"),
            "tf_env_wrapper_path": str(root / "bin" / "tfgpu-env"),
            "tf_env_installer_url": url,
            "tf_env_installer_sha256": sha,
        }

    @property
    def link(self) -> Path:
        return self.root / "envs" / "tf-gpu"

    def play(self, *args: str) -> tuple[int, dict[str, Any], str]:
        """Run the role through ansible-runner: (rc, {"results", "stats"}, stdout)."""
        playbook = self.work / "play.yml"
        playbook.write_text(PLAYBOOK)
        extra = self.work / "vars.json"
        extra.write_text(json.dumps(self.vars))
        run = ansible_runner.run(
            private_data_dir=str(self.work),
            playbook=str(playbook),
            inventory="localhost,",
            cmdline=" ".join([f"-e @{extra}", *args]),
            envvars={
                "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
                "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
                "ANSIBLE_LOCALHOST_WARNING": "false",
                "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
            },
            quiet=True,
        )
        found: dict[str, dict[str, Any]] = {}
        for event in run.events:
            data = event.get("event_data", {})
            kind = event.get("event", "")
            if kind in ("runner_on_ok", "runner_on_failed", "runner_on_skipped"):
                res = dict(data.get("res", {}))
                res.setdefault("failed", kind == "runner_on_failed")
                if kind == "runner_on_skipped":
                    res["skipped"] = True
                found[data["task"]] = res
        stats = {
            name: sum(v for h, v in (run.stats or {}).get(name, {}).items() if h == "localhost")
            for name in ("changed", "failures", "ok", "skipped")
        }
        stdout = run.stdout.read()
        shutil.rmtree(self.work / "artifacts", ignore_errors=True)
        return run.rc, {"results": found, "stats": stats}, stdout


def results(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Task name -> that task's result on localhost (the last one when a name repeats)."""
    return dict(doc["results"])


def stats(doc: dict[str, Any]) -> dict[str, int]:
    return dict(doc["stats"])


@pytest.fixture
def lab(tmp_path: Path, installer_server: tuple[str, str]) -> Lab:
    return Lab(tmp_path, *installer_server)


def test_check_mode_runs_the_conda_path_and_changes_nothing(lab: Lab) -> None:
    rc, doc, err = lab.play("--check")
    assert rc == 0, err + json.dumps(results(doc), indent=1)[-3000:]
    done = results(doc)
    # The download is checked against the mirror; the commands report what they would do.
    assert done["Download the conda installer"]["changed"] is True
    assert done["Run the Miniforge installer"]["changed"] is True
    assert done["Create the conda env"].get("skipped") is True
    assert done["Install the tfgpu-env wrapper"]["changed"] is True
    assert stats(doc)["failures"] == 0
    assert list(lab.root.iterdir()) == []


def test_checksum_mismatch_fails_before_the_installer_runs(lab: Lab) -> None:
    good = lab.vars["tf_env_installer_sha256"]
    lab.vars["tf_env_installer_sha256"] = ("0" if good[0] != "0" else "1") + good[1:]
    rc, doc, _ = lab.play()
    assert rc != 0
    failed = results(doc)["Download the conda installer"]
    assert failed["failed"] is True
    assert "checksum" in failed["msg"] and "did not match" in failed["msg"]
    assert "Run the Miniforge installer" not in results(doc)
    assert not (lab.root / "installer-ran").exists()
    assert not (lab.root / "conda").exists()
    assert not list(lab.root.glob("conda*.installer"))


def test_conda_is_refused_without_an_installer_checksum(lab: Lab) -> None:
    lab.vars["tf_env_installer_sha256"] = ""
    rc, doc, _ = lab.play()
    assert rc != 0
    failed = results(doc)["Check the conda installer settings"]
    assert "tf_env_installer_sha256" in failed["msg"]
    assert not (lab.root / "envs").exists()


def test_conda_env_with_pip_cuda_builds_switches_and_is_idempotent(lab: Lab) -> None:
    lab.vars["tfgpu_stack"] = stack(python={"min": "3.10", "max": "3.13", "selected": HOST_PYTHON})
    # The host's trust store and its update command, redirected into the tmp "host".
    ca = lab.root.parent / "site-proxy.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nfixture\n-----END CERTIFICATE-----\n")
    lab.vars["tfgpu_options"]["tfgpu_ca_certificates"] = [str(ca)]
    lab.vars["__tf_env_ca_dir"] = str(lab.root)
    lab.vars["__tf_env_ca_update_command"] = ["touch", str(lab.root / "trust-updated")]
    rc, doc, err = lab.play()
    assert rc == 0, err + json.dumps(results(doc), indent=1)[-3000:]
    assert (lab.root / "installer-ran").exists()

    state = json.loads((lab.link / ".tfgpu-env.json").read_text())
    prefix = Path(state["prefix"])
    assert lab.link.resolve() == prefix
    assert prefix.name == f"tf-gpu-{state['spec_hash'][:12]}"
    assert state["previous_prefix"] is None
    assert state["spec"]["manager"] == "conda"

    env_file = Path(f"{prefix}.environment.yml")
    text = env_file.read_text()
    assert text.startswith("#")  # ansible_managed header
    env = yaml.safe_load(text)
    assert set(env) == {"name", "channels", "dependencies"}
    assert env["name"] == "tf-gpu"
    assert env["channels"] == ["conda-forge", "https://conda-mirror.example.org/nvidia"]
    deps = env["dependencies"]
    assert deps[0] == f"python={HOST_PYTHON}"
    assert "pip" in deps
    (pip_section,) = [d for d in deps if isinstance(d, dict)]
    assert pip_section == {"pip": ["tensorflow[and-cuda]==2.21.0"]}

    assert (lab.root / "site-proxy.crt").read_text() == ca.read_text()
    assert (lab.root / "trust-updated").exists()
    # pip inside conda was pointed at the system bundle that now holds the extra CA.
    assert (lab.root / "conda" / "conda-env").read_text().strip() == (
        "PIP_CERT=/etc/ssl/certs/ca-certificates.crt"
    )

    calls = (lab.root / "conda" / "conda-calls").read_text().split()
    assert calls == ["env", "create", "--prefix", str(prefix), "--file", str(env_file)]

    wrapper = lab.root / "bin" / "tfgpu-env"
    out = subprocess.run(
        [
            str(wrapper),
            "python",
            "-c",
            "import sys, os; print(sys.prefix, os.environ['CONDA_PREFIX'])",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == [str(prefix), str(prefix)]

    facts = results(doc)["Publish the env for the verify stage"]["ansible_facts"]["tfgpu_env"]
    assert facts["prefix"] == str(prefix)
    assert facts["manager"] == "conda"
    assert facts["spec_hash"] == state["spec_hash"]

    (lab.root / "trust-updated").unlink()
    rc, doc, err = lab.play()
    assert rc == 0, err
    assert stats(doc)["changed"] == 0, [n for n, r in results(doc).items() if r.get("changed")]
    assert not (lab.root / "trust-updated").exists()
    assert len((lab.root / "conda" / "conda-calls").read_text().splitlines()) == 1


def test_conda_cuda_renders_tensorflow_cuda_build_with_exact_pins(lab: Lab) -> None:
    lab.vars["tfgpu_stack"] = stack(
        python={"min": "3.10", "max": "3.13", "selected": HOST_PYTHON},
        sources={"driver": "distro", "cuda": "conda", "cudnn": "conda", "env": "conda"},
        pip_requirement="tensorflow==2.21.0",
    )
    rc, doc, err = lab.play()
    assert rc == 0, err + json.dumps(results(doc), indent=1)[-3000:]
    state = json.loads((lab.link / ".tfgpu-env.json").read_text())
    env = yaml.safe_load(Path(f"{state['prefix']}.environment.yml").read_text())
    assert env["dependencies"] == [
        f"python={HOST_PYTHON}",
        "tensorflow=2.21.0=cuda*",
        "cuda-version>=12.5,<13",
        "cudnn>=9.3,<10",
    ]
    assert state["spec"]["requirements"] == []


def test_venv_without_a_python_in_range_fails_with_the_fix(lab: Lab) -> None:
    lab.vars["tfgpu_stack"] = stack(
        python={"min": "3.98", "max": "3.99", "selected": None},
        sources={"driver": "distro", "cuda": "pip", "cudnn": "pip", "env": "venv"},
    )
    rc, doc, _ = lab.play()
    assert rc != 0
    msg = results(doc)["Fail when no system Python fits TensorFlow 2.21.0"]["msg"]
    assert "3.98 to 3.99" in msg
    assert "/usr/bin/python3." in msg  # what was found
    assert "tfgpu_env_manager: conda" in msg and "python3.99" in msg
    assert not (lab.root / "envs").exists()
