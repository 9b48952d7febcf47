"""JUnit XML: one testcase per host and check (classname = host, name = check).

A failed check is a ``<failure>``; a skipped or not-run one is ``<skipped>``; a simulated
result carries the property ``simulated=true`` and says so in ``<system-out>``, so no CI
dashboard can mistake it for a GPU pass.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tfgpu_provision.report.model import CheckResult, HostReport, RunReport


def _testcase(suite: ET.Element, host: HostReport, check: CheckResult) -> tuple[str, float]:
    case = ET.SubElement(suite, "testcase", classname=host.name, name=check.name)
    duration = check.duration_s or 0.0
    case.set("time", f"{duration:.3f}")
    if check.simulated:
        props = ET.SubElement(case, "properties")
        ET.SubElement(props, "property", name="simulated", value="true")
    if check.status == "fail":
        failure = ET.SubElement(case, "failure", message=check.message or "failed")
        lines = [f"verdict: {host.verdict} - {host.reason}"]
        for diag in host.diagnoses:
            lines.append(f"[{diag.id}] {diag.cause}")
            if diag.fix:
                lines.append(f"fix: {diag.fix}")
            lines.extend(f"log: {e}" for e in diag.evidence)
        failure.text = "\n".join(lines)
        outcome = "failure"
    elif check.status in ("skip", "not_run"):
        ET.SubElement(case, "skipped", message=check.message or check.status)
        outcome = "skipped"
    else:
        outcome = "pass"
    if check.simulated:
        out = ET.SubElement(case, "system-out")
        out.text = (
            f"simulated: {check.name} ran on CPU logical devices on {host.name}; "
            "this is not a GPU result."
        )
    return outcome, duration


def render(report: RunReport) -> str:
    suites = ET.Element("testsuites", name=f"tfgpu-provision {report.run_name}")
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    total_time = 0.0
    for host in report.hosts:
        suite = ET.SubElement(suites, "testsuite", name=host.name)
        counts = {"tests": 0, "failures": 0, "skipped": 0}
        suite_time = 0.0
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="verdict", value=host.verdict)
        ET.SubElement(props, "property", name="simulated", value=str(host.simulated).lower())
        for check in host.checks:
            outcome, duration = _testcase(suite, host, check)
            counts["tests"] += 1
            suite_time += duration
            if outcome == "failure":
                counts["failures"] += 1
            elif outcome == "skipped":
                counts["skipped"] += 1
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        suite.set("errors", "0")
        suite.set("time", f"{suite_time:.3f}")
        total_time += suite_time
    for key, value in totals.items():
        suites.set(key, str(value))
    suites.set("errors", "0")
    suites.set("time", f"{total_time:.3f}")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, "unicode") + "\n"
