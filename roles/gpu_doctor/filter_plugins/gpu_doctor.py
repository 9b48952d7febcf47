# The doctor's rules run on the controller from the tfgpu_provision package, so a plain
# ansible-playbook run of playbooks/doctor.yml shows the same top finding as the CLI does:
# the rules exist once, in tfgpu_provision/doctor, never as a Jinja copy.
from __future__ import annotations

from typing import Any


def tfgpu_doctor_headline(evidence: dict[str, Any]) -> str:
    """One line per finding, most likely first, for the play's output."""
    try:
        from tfgpu_provision.doctor import evidence as doctor_evidence
        from tfgpu_provision.doctor import report
    except ImportError as exc:
        return (
            f"Evidence collected; the diagnosis needs the tfgpu_provision package ({exc}): "
            "run from the project's virtualenv or use tfgpu-provision doctor."
        )
    result = report.examine(doctor_evidence.from_document(evidence))
    if not result.findings:
        return f"{result.name}: {result.status}: nothing wrong found"
    lines = [f"{result.name}: {result.status}"]
    for rank, finding in enumerate(result.findings, start=1):
        lines.append(
            f"{rank}. [{finding.severity}] {finding.title}: {finding.cause} Fix: {finding.fix}"
        )
    return "\n".join(lines)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"tfgpu_doctor_headline": tfgpu_doctor_headline}
