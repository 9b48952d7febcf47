"""The tfgpu_preload callback: enabled by ansible.cfg, found from any directory, and it preloads.

Its effect on speed is measured by ``make bench`` (figure d, plan on 32 hosts / 4 hosts), not
here.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "playbooks" / "callback_plugins" / "tfgpu_preload.py"


def test_ansible_cfg_enables_it_from_any_working_directory(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-config"), "dump", "--only-changed"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
        env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), NO_COLOR="1"),
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    enabled = next(line for line in lines if line.startswith("CALLBACKS_ENABLED"))
    assert "tfgpu_preload" in enabled
    path = next(line for line in lines if line.startswith("DEFAULT_CALLBACK_PLUGIN_PATH"))
    assert str(PLUGIN.parent) in path


def test_instantiating_it_loads_the_engine_and_its_data() -> None:
    spec = importlib.util.spec_from_file_location("tfgpu_preload_under_test", PLUGIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    from tfgpu_provision import facts, inventory
    from tfgpu_provision.compat import matrix

    for cached in (matrix._packaged_matrix, inventory.options, facts._gpu_table):
        cached.cache_clear()
    callback = module.CallbackModule()
    assert callback.preloaded
    assert "tfgpu_provision.preflight" in sys.modules
    # The parsed data is cached now: a forked worker inherits it instead of parsing it again.
    for cached in (matrix._packaged_matrix, inventory.options, facts._gpu_table):
        assert cached.cache_info().currsize == 1, cached
