# Returns the failure signatures of tfgpu_provision/data/signatures.yaml (one copy of the
# rules) so the tf_verify role can ship them to hosts as JSON for the check script's matcher.
from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = """
name: tfgpu_signatures
short_description: The failure signatures of tfgpu_provision (data/signatures.yaml)
description:
  - Returns one element, the signatures data as a mapping (schema, context_keys, signatures).
  - Imports the tfgpu_provision package, so run Ansible from the project's virtualenv.
"""


class LookupModule(LookupBase):  # type: ignore[misc]
    def run(
        self, terms: list[Any], variables: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[Any]:
        try:
            from tfgpu_provision import diagnose
        except ImportError as exc:
            raise AnsibleError(
                f"The tfgpu_provision package is not importable by this Ansible ({exc}); "
                "run ansible-playbook from the project's virtualenv (make setup)."
            ) from exc
        try:
            return [diagnose.load_raw()]
        except (OSError, diagnose.SignatureError) as exc:
            raise AnsibleError(f"tfgpu_provision signatures: {exc}") from exc
