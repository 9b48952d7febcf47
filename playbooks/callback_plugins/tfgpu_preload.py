"""Import tfgpu-provision's controller code once, in ansible-playbook's main process.

Ansible forks a worker per host per task; the preflight's action plugin then imports the
compatibility engine and reads its data (matrix, options, GPU table) in every worker, which on a
32-host plan was about half of the controller's CPU time. Callback plugins are loaded in the
main process before any worker is forked, so importing here once lets every worker inherit the
modules and the parsed data (``load_matrix`` and ``options`` are cached). Enabled in
ansible.cfg (``callbacks_enabled``); prints nothing and handles no event.
"""

from __future__ import annotations

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: tfgpu_preload
type: aggregate
short_description: import tfgpu-provision's controller code before Ansible forks its workers
description:
  - Imports the compatibility engine and reads its data once in the main process, so that
    forked workers do not repeat it for every host. Handles no event.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "tfgpu_preload"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self.preloaded = False
        try:
            from tfgpu_provision import facts, inventory, preflight  # noqa: F401
            from tfgpu_provision.compat import matrix
        except ImportError:
            # A Python without the package: the action plugin reports that itself, clearly.
            return
        matrix.load_matrix()
        inventory.options()
        facts.gpu_models()
        self.preloaded = True
