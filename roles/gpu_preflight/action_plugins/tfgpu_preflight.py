# Controller side of the preflight: runs the read-only `tfgpu_probe` module on the host,
# then parses its raw output and resolves the stack with the tfgpu_provision package itself,
# so the rules exist once (in tfgpu_provision.compat), never as a Jinja copy.
#
# The tfgpu_* options are read from the host's variables here, with their defaults and
# their validation from tfgpu_provision/options.yaml: one schema for the CLI, the inventory
# validator and plain ansible-playbook runs.
from __future__ import annotations

from typing import Any

from ansible.plugins.action import ActionBase

# option name -> the compat engine's pin name
_PINS = {
    "tfgpu_driver_source": "driver_source",
    "tfgpu_driver_branch": "driver_branch",
    "tfgpu_cuda_source": "cuda_source",
    "tfgpu_cudnn_source": "cudnn_source",
    "tfgpu_env_manager": "env_manager",
    "tfgpu_python_version": "python",
}


# Options whose values may carry credentials (a package index URL with a token).
_SECRET_OPTIONS = frozenset({"tfgpu_pip_index_url"})


class ActionModule(ActionBase):  # type: ignore[misc]
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        try:
            from tfgpu_provision import inventory, preflight
            from tfgpu_provision.errors import BadInput
        except ImportError as exc:
            result.update(
                failed=True,
                msg=(
                    f"The tfgpu_provision package is not importable by this Ansible ({exc}); "
                    "run ansible-playbook from the project's virtualenv (make setup)."
                ),
            )
            return result

        options = inventory.defaults()
        given = {
            name: self._templar.template(task_vars[name]) for name in options if name in task_vars
        }
        try:
            inventory.validate_vars(given, f"host {task_vars.get('inventory_hostname', '?')}")
        except BadInput as exc:
            result.update(failed=True, msg=str(exc))
            return result
        options.update(given)

        probe = self._execute_module(
            module_name="tfgpu_probe",
            module_args={"disk_path": self._task.args.get("disk_path", "/opt")},
            task_vars=task_vars,
        )
        if probe.get("failed") or "raw" not in probe:
            result.update(failed=True, msg=f"GPU probe failed: {probe.get('msg', probe)}")
            return result

        pins = {
            pin: options[name] for name, pin in _PINS.items() if options.get(name) not in ("", None)
        }
        outcome = preflight.evaluate(
            raw=probe["raw"],
            request=options["tfgpu_tensorflow_version"],
            pins=pins,
            require_gpu=bool(options["tfgpu_require_gpu"]),
            simulate_gpus=int(options["tfgpu_simulate_gpus"] or 0),
        )
        result.update(outcome.to_result())
        # Every option with its default applied, for the later roles: one schema, no role
        # repeats a tfgpu_* default. Options that may hold credentials are redacted: facts
        # land in the run's events; roles read those from the host's variables instead.
        result["ansible_facts"]["tfgpu_options"] = {
            name: ("<redacted>" if name in _SECRET_OPTIONS and value else value)
            for name, value in options.items()
        }
        return result
