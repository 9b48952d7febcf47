"""The run model: resolved stack + per-host Ansible stats + verify result -> one typed document.

Inputs are a run directory as the runner leaves it: ``summary.json`` (written by
``runner.write_summary``) and ``verify/<host>.json`` (fetched by the ``tf_verify`` role, schema
``tfgpu-provision/verify/1``). Both are read defensively: a missing key is "unknown", never a
crash, and a host without a verify document is "not verified".

Verdicts, one per host, in order of precedence:

* ``unreachable`` -- Ansible could not reach the host;
* ``reboot_pending`` -- the host needs a reboot that the run was not allowed to do;
* ``fail`` -- a task failed, the verify document says fail, or a verify stage failed;
* ``not verified`` -- no verify document came back;
* ``simulated`` -- every check passed, but on simulated (CPU logical) devices: never a GPU pass;
* ``pass`` -- every check passed on real GPUs.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tfgpu_provision.errors import EXIT_HOST_FAILED, EXIT_INTERRUPTED, EXIT_OK, BadInput

REPORT_SCHEMA = "tfgpu-provision/report/1"
VERIFY_SCHEMA = "tfgpu-provision/verify/1"

PASS = "pass"
SIMULATED = "simulated"
FAIL = "fail"
UNREACHABLE = "unreachable"
NOT_VERIFIED = "not verified"
REBOOT_PENDING = "reboot_pending"
VERDICTS = (PASS, SIMULATED, FAIL, UNREACHABLE, NOT_VERIFIED, REBOOT_PENDING)
GOOD_VERDICTS = frozenset({PASS, SIMULATED})

# The verify script's stages, in the order it runs them.
VERIFY_STAGES = ("versions", "gpus_visible", "matmul", "all_reduce", "keras_step", "placement")
# One JUnit testcase per host and check: the Ansible run itself, then every verify stage.
CHECKS = ("provision", *VERIFY_STAGES)

# A GPU below this fraction of the median TFLOP/s of its same-model peers is flagged.
SLOW_FRACTION = 0.8

# Names the verify script has used for its stages -> the report's check names.
STAGE_ALIASES = {"gpus": "gpus_visible", "allreduce": "all_reduce", "keras": "keras_step"}

_REBOOT_PENDING = re.compile(r"reboot[ _-]pending", re.IGNORECASE)
_DEVICE_INDEX = re.compile(r"(?:GPU|CPU):(\d+)\s*$", re.IGNORECASE)


@dataclass
class Diagnosis:
    """A problem with its cause in plain words, the fix, and the log lines that show it."""

    id: str
    cause: str
    fix: str
    evidence: list[str] = field(default_factory=list)
    source: str = "verify"  # verify | preflight | ansible | report
    severity: str = "error"  # error | warning | info


@dataclass
class CheckResult:
    """One check on one host: ``provision`` or a verify stage."""

    name: str
    status: str  # pass | fail | skip | not_run
    simulated: bool = False
    message: str = ""
    duration_s: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class DeviceResult:
    """The matmul result of one device, with the outlier flag against its peers."""

    host: str
    device: str
    index: int | None
    model: str
    device_type: str
    simulated: bool
    correct: bool | None
    max_abs_error: float | None
    tflops_fp32: float | None
    tflops_bf16: float | None
    peer_median_fp32: float | None = None
    peer_count: int = 0
    slow: bool = False
    slow_reason: str = ""


@dataclass
class HostReport:
    """Everything the report says about one host."""

    name: str
    verdict: str
    reason: str
    ansible_status: str
    stats: dict[str, int]
    verify_present: bool
    simulated: bool
    tensorflow: str | None = None
    python: str | None = None
    build_cuda: str | None = None
    build_cudnn: str | None = None
    compute_capabilities: list[str] = field(default_factory=list)
    expected_gpus: int | None = None
    gpu_devices: int = 0
    simulated_devices: int = 0
    devices: list[dict[str, Any]] = field(default_factory=list)
    gpu_models: list[str] = field(default_factory=list)
    driver: str | None = None
    stack: dict[str, Any] | None = None
    checks: list[CheckResult] = field(default_factory=list)
    device_results: list[DeviceResult] = field(default_factory=list)
    all_reduce_ok: bool | None = None
    keras_loss_falling: bool | None = None
    keras_losses: list[float] = field(default_factory=list)
    diagnoses: list[Diagnosis] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    log_tail: list[str] = field(default_factory=list)

    def check(self, name: str) -> CheckResult | None:
        return next((c for c in self.checks if c.name == name), None)

    @property
    def matmul_ok(self) -> bool | None:
        known = [d.correct for d in self.device_results if d.correct is not None]
        if not known:
            return None
        return all(known)


@dataclass
class RunReport:
    """The whole run, ready for any renderer."""

    run_dir: Path
    run_name: str
    status: str
    finished: bool
    cancelled: bool
    verify_expected: bool
    hosts: list[HostReport]
    guard_errors: list[str] = field(default_factory=list)
    generated_at: str = ""

    @property
    def exit_code(self) -> int:
        """0: every host pass or simulated; 1: any host failed; 130: the run was interrupted.

        A host without a verify document counts as a failure only when the run was meant to
        verify (site/verify playbooks); a preflight-only run is judged by Ansible alone.
        """
        if self.cancelled:
            return EXIT_INTERRUPTED
        if self.guard_errors or not self.finished:
            return EXIT_HOST_FAILED
        for host in self.hosts:
            if host.verdict in GOOD_VERDICTS:
                continue
            if host.verdict == NOT_VERIFIED and not self.verify_expected:
                continue
            return EXIT_HOST_FAILED
        return EXIT_OK

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(VERDICTS, 0)
        for host in self.hosts:
            out[host.verdict] = out.get(host.verdict, 0) + 1
        return out

    def all_device_results(self) -> list[DeviceResult]:
        return [d for h in self.hosts for d in h.device_results]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (see ``data/report.schema.json``)."""
        return {
            "schema": REPORT_SCHEMA,
            "run": {
                "name": self.run_name,
                "dir": str(self.run_dir),
                "status": self.status,
                "finished": self.finished,
                "cancelled": self.cancelled,
                "verify_expected": self.verify_expected,
                "guard_errors": list(self.guard_errors),
                "generated_at": self.generated_at,
            },
            "exit_code": self.exit_code,
            "counts": self.counts(),
            "hosts": [_host_dict(h) for h in self.hosts],
        }


def _host_dict(host: HostReport) -> dict[str, Any]:
    doc = asdict(host)
    doc["matmul_ok"] = host.matmul_ok
    return doc


# --------------------------------------------------------------------------- loading


def load_run(run_dir: Path | str, *, verify_expected: bool | None = None) -> RunReport:
    """Read a run directory into a ``RunReport``; raises ``BadInput`` when it is not one."""
    run_dir = Path(run_dir)
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise BadInput(
            f"{run_dir} is not a run directory (it has no summary.json).",
            fix="pass a directory under .tfgpu/runs, or a run name from it",
        )
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInput(f"{summary_path} cannot be read as JSON: {exc}.") from None
    if not isinstance(summary, Mapping):
        raise BadInput(f"{summary_path} does not hold a JSON object.")

    verify_dir = run_dir / "verify"
    verify_docs = _load_verify_docs(verify_dir)
    if verify_expected is None:
        verify_expected = _infer_verify_expected(summary, run_dir, bool(verify_docs))

    host_entries = _host_entries(summary)
    names = sorted(set(host_entries) | set(verify_docs))
    hosts = [build_host(name, host_entries.get(name, {}), verify_docs.get(name)) for name in names]
    flag_slow_devices([d for h in hosts for d in h.device_results])

    guard = summary.get("guard_errors")
    return RunReport(
        run_dir=run_dir,
        run_name=run_dir.name,
        status=str(summary.get("status") or "unknown"),
        finished=bool(summary.get("finished", False)),
        cancelled=bool(summary.get("cancelled", False)),
        verify_expected=verify_expected,
        hosts=hosts,
        guard_errors=[str(g) for g in guard] if isinstance(guard, list) else [],
        generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def _load_verify_docs(verify_dir: Path) -> dict[str, Mapping[str, Any] | str]:
    """host -> its verify document, or the reason it could not be read (a string)."""
    docs: dict[str, Mapping[str, Any] | str] = {}
    if not verify_dir.is_dir():
        return docs
    for path in sorted(verify_dir.glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            docs[path.stem] = f"{path.name} is not valid JSON ({exc})"
            continue
        if not isinstance(doc, Mapping):
            docs[path.stem] = f"{path.name} does not hold a JSON object"
            continue
        # The file name is the inventory name; the document's own "host" may be the hostname.
        docs[path.stem] = doc
    return docs


def _infer_verify_expected(summary: Mapping[str, Any], run_dir: Path, any_docs: bool) -> bool:
    explicit = summary.get("verify_expected")
    if isinstance(explicit, bool):
        return explicit
    playbook = summary.get("playbook")
    if isinstance(playbook, str) and playbook:
        return Path(playbook).stem in ("site", "verify")
    if any_docs:
        return True
    # Run directories are named <stamp>-<playbook stem>[-n] by the runner.
    return bool(re.search(r"-(site|verify)(-\d+)?$", run_dir.name))


def _host_entries(summary: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    raw = summary.get("hosts")
    entries: dict[str, Mapping[str, Any]] = {}
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, Mapping) and item.get("name"):
                entries[str(item["name"])] = item
    elif isinstance(raw, Mapping):
        for name, item in raw.items():
            if isinstance(item, Mapping):
                entries[str(name)] = item
    return entries


# --------------------------------------------------------------------------- one host


def _get(mapping: object, *keys: str) -> Any:
    value: Any = mapping
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _str(value: object) -> str | None:
    return None if value in (None, "") else str(value)


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _int(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return 0


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _dicts(value: object) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def build_host(
    name: str, entry: Mapping[str, Any], verify: Mapping[str, Any] | str | None
) -> HostReport:
    """Fold one host's summary entry and verify document into its report."""
    stats = {
        key: _int(entry.get(key))
        for key in ("ok", "changed", "failed", "unreachable", "skipped", "rescued", "ignored")
    }
    ansible_status = str(entry.get("status") or ("unknown" if not entry else "ok"))
    errors = [{k: str(v) for k, v in e.items()} for e in _dicts(entry.get("errors"))]
    preflight = _map(entry.get("preflight"))
    stack = _get(preflight, "resolution", "stack")
    facts = _get(preflight, "host") or {}

    host = HostReport(
        name=name,
        verdict=NOT_VERIFIED,
        reason="",
        ansible_status=ansible_status,
        stats=stats,
        verify_present=isinstance(verify, Mapping),
        simulated=False,
        stack=dict(stack) if isinstance(stack, Mapping) else None,
        errors=errors,
        driver=_str(_get(facts, "driver", "version")),
        gpu_models=[str(g.get("name")) for g in _dicts(_get(facts, "gpus")) if g.get("name")],
    )
    if host.stack:
        host.tensorflow = _str(host.stack.get("tensorflow"))
        host.python = _str(_get(host.stack, "python", "selected"))

    for warning in _dicts(_get(preflight, "resolution", "warnings")):
        host.warnings.append(_finding(warning))
    for note in _dicts(_get(preflight, "notes")):
        host.warnings.append(_finding(note))
    for failure in _dicts(_get(preflight, "failures")):
        host.diagnoses.append(
            Diagnosis(
                id=str(failure.get("code") or "PREFLIGHT"),
                cause=str(failure.get("message") or "the preflight failed"),
                fix=str(failure.get("fix") or ""),
                source="preflight",
            )
        )
    for error in _dicts(_get(preflight, "resolution", "errors")):
        finding = _finding(error)
        if not any(d.id == finding["code"] for d in host.diagnoses):
            host.diagnoses.append(
                Diagnosis(finding["code"], finding["message"], finding["fix"], source="preflight")
            )

    if isinstance(verify, Mapping):
        _apply_verify(host, verify, facts)
    elif isinstance(verify, str):
        host.diagnoses.append(
            Diagnosis(
                id="VERIFY_UNREADABLE",
                cause=f"The verify document could not be read: {verify}.",
                fix="Run the verify stage again (tfgpu-provision verify --inventory ...).",
                source="report",
            )
        )
    _decide(host, verify)
    host.checks.insert(0, _provision_check(host))
    if host.verify_present:
        present = {c.name for c in host.checks}
        for stage in VERIFY_STAGES:
            if stage not in present:
                host.checks.append(
                    CheckResult(stage, "not_run", message="the verify document has no such stage")
                )
        order = {n: i for i, n in enumerate(CHECKS)}
        host.checks.sort(key=lambda c: order.get(c.name, len(order)))
    else:
        why = "not verified: " + (host.reason or "no verify document")
        host.checks.extend(CheckResult(stage, "not_run", message=why) for stage in VERIFY_STAGES)
    return host


def _finding(raw: Mapping[str, Any]) -> dict[str, str]:
    return {
        "code": str(raw.get("code") or raw.get("id") or "NOTE"),
        "message": str(raw.get("message") or raw.get("cause") or ""),
        "fix": str(raw.get("fix") or ""),
    }


def _apply_verify(host: HostReport, doc: Mapping[str, Any], facts: Mapping[str, Any]) -> None:
    versions = _map(doc.get("versions"))
    build = _map(versions.get("build_info")) or _map(doc.get("build"))
    host.tensorflow = _str(versions.get("tensorflow")) or host.tensorflow
    host.python = _str(versions.get("python")) or host.python
    host.build_cuda = _str(build.get("cuda_version"))
    host.build_cudnn = _str(build.get("cudnn_version"))
    caps = build.get("cuda_compute_capabilities")
    if isinstance(caps, list):
        host.compute_capabilities = [str(c) for c in caps]
    elif isinstance(caps, str) and caps:
        host.compute_capabilities = caps.replace(",", " ").split()
    expected = doc.get("expected_gpus", _get(doc, "arguments", "expected_gpus"))
    if isinstance(expected, int) and not isinstance(expected, bool) and expected >= 0:
        host.expected_gpus = expected

    doc_simulated = bool(doc.get("simulated"))
    device_models: dict[str, str] = {}
    for device in _dicts(doc.get("devices")):
        simulated = bool(device.get("simulated", doc_simulated))
        dtype = str(device.get("device_type") or device.get("kind") or "").upper()
        name = str(device.get("name") or "?")
        host.devices.append({"name": name, "device_type": dtype, "simulated": simulated})
        if device.get("device_name"):
            device_models[name] = str(device["device_name"])
        if simulated:
            host.simulated_devices += 1
        elif dtype == "GPU":
            host.gpu_devices += 1

    for stage in _dicts(doc.get("stages")):
        raw_name = str(stage.get("name") or "")
        if not raw_name:
            continue
        name = STAGE_ALIASES.get(raw_name, raw_name)
        status = str(stage.get("status") or "").lower()
        if status not in ("pass", "fail", "skip"):
            status = "fail" if status else "not_run"
        details = _map(stage.get("details"))
        check = CheckResult(
            name=name,
            status=status,
            simulated=bool(stage.get("simulated", doc_simulated)),
            message=_stage_message(name, status, details, stage),
            duration_s=_float(stage.get("duration_s")),
            details=dict(details),
        )
        host.checks.append(check)
        if details.get("warning"):
            host.warnings.append(
                {"code": f"{name.upper()}_WARNING", "message": str(details["warning"]), "fix": ""}
            )
        if name == "matmul":
            host.device_results = _matmul_results(
                host, stage.get("details"), check, facts, device_models
            )
        elif name == "all_reduce":
            host.all_reduce_ok = _bool(details.get("correct"))
            if host.all_reduce_ok is None and status in ("pass", "fail"):
                host.all_reduce_ok = status == "pass"
        elif name == "keras_step":
            losses = details.get("losses")
            host.keras_losses = [
                f
                for f in (_float(v) for v in (losses if isinstance(losses, list) else []))
                if f is not None
            ]
            host.keras_loss_falling = _bool(details.get("falling", details.get("loss_fell")))

    for diag in _dicts(doc.get("diagnoses")):
        evidence = diag.get("evidence", diag.get("lines"))
        severity = str(diag.get("severity") or "error")
        diagnosis = Diagnosis(
            id=str(diag.get("id") or "DIAGNOSIS"),
            cause=str(diag.get("cause") or diag.get("title") or ""),
            fix=str(diag.get("fix") or ""),
            evidence=[str(e) for e in evidence] if isinstance(evidence, list) else [],
            severity=severity if severity in ("error", "warning", "info") else "error",
        )
        if diagnosis.severity == "error":
            host.diagnoses.append(diagnosis)
        else:  # worth knowing, not a reason the host failed
            host.warnings.append(
                {"code": diagnosis.id, "message": diagnosis.cause, "fix": diagnosis.fix}
            )
    log = doc.get("log")
    if isinstance(log, Mapping):
        log = log.get("lines")
    if isinstance(log, list):
        host.log_tail = [str(line) for line in log[-20:]]
    elif isinstance(log, str):
        host.log_tail = log.splitlines()[-20:]

    host.simulated = (
        doc_simulated
        or any(d["simulated"] for d in host.devices)
        or any(c.simulated for c in host.checks)
    )


def _stage_message(
    name: str, status: str, details: Mapping[str, Any], stage: Mapping[str, Any]
) -> str:
    for key in ("message", "reason", "error"):
        text = stage.get(key) or details.get(key)
        if text:
            return str(text)
    if name == "gpus_visible" and status == "fail":
        return (
            f"expected {details.get('expected', '?')} GPU(s), TensorFlow sees "
            f"{details.get('visible', details.get('got', '?'))}"
        )
    if name == "all_reduce" and status == "fail":
        return f"expected {details.get('expected')}, got {details.get('got')}"
    if name == "keras_step" and status == "fail":
        return f"loss did not fall: {details.get('losses')}"
    return ""


def _matmul_rows(details: object) -> list[Mapping[str, Any]]:
    """The per-device rows of the matmul stage, whichever container the script used."""
    if isinstance(details, list):
        return _dicts(details)
    if not isinstance(details, Mapping):
        return []
    if "device" in details and any(k in details for k in ("correct", "tflops_fp32", "fp32")):
        return [details]
    for value in details.values():
        rows = _dicts(value)
        if rows and all("device" in r for r in rows):
            return rows
    keyed: list[Mapping[str, Any]] = [
        {"device": key, **value}
        for key, value in details.items()
        if isinstance(value, Mapping)
        and any(k in value for k in ("correct", "tflops_fp32", "fp32"))
    ]
    return keyed


def _device_index(device: str) -> int | None:
    match = _DEVICE_INDEX.search(device)
    return int(match.group(1)) if match else None


def _precision(row: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A nested per-precision result (``{"fp32": {"ok", "tflops", ...}}``), or {}."""
    return _map(row.get(key))


def _row_correct(row: Mapping[str, Any]) -> bool | None:
    flat = _bool(row.get("correct"))
    if flat is not None:
        return flat
    nested = [_precision(row, k) for k in ("fp32", "bf16")]
    oks = [_bool(n.get("ok")) for n in nested if n and n.get("status") != "skip"]
    known = [ok for ok in oks if ok is not None]
    if known:
        return all(known)
    status = str(row.get("status") or "")
    return status == "pass" if status in ("pass", "fail") else None


def _matmul_results(
    host: HostReport,
    details: object,
    check: CheckResult,
    facts: Mapping[str, Any],
    device_models: Mapping[str, str],
) -> list[DeviceResult]:
    gpus = {
        _int(g.get("index")): str(g.get("name") or "")
        for g in _dicts(facts.get("gpus") if isinstance(facts, Mapping) else None)
    }
    results = []
    for row in _matmul_rows(details):
        device = str(row.get("device") or "?")
        index = _device_index(device)
        dtype = "GPU" if "GPU" in device.upper() else "CPU"
        simulated = bool(row.get("simulated", check.simulated))
        model = str(row.get("device_name") or row.get("model") or device_models.get(device) or "")
        if not model:
            if simulated:
                model = "simulated (CPU logical device)"
            elif index is not None and gpus.get(index):
                model = gpus[index]
            else:
                model = dtype
        fp32, bf16 = _precision(row, "fp32"), _precision(row, "bf16")
        errors = [
            e
            for e in (
                _float(row.get("max_abs_error")),
                _float(fp32.get("max_abs_error")),
            )
            if e is not None
        ]
        results.append(
            DeviceResult(
                host=host.name,
                device=device,
                index=index,
                model=model,
                device_type=dtype,
                simulated=simulated,
                correct=_row_correct(row),
                max_abs_error=errors[0] if errors else None,
                tflops_fp32=_float(row.get("tflops_fp32", fp32.get("tflops"))),
                tflops_bf16=_float(row.get("tflops_bf16", bf16.get("tflops"))),
            )
        )
    return results


def flag_slow_devices(devices: list[DeviceResult], fraction: float = SLOW_FRACTION) -> None:
    """Flag real GPUs far below the median fp32 TFLOP/s of the same model across the fleet.

    Simulated devices are never flagged: their numbers measure a CPU, not a GPU.
    """
    groups: dict[str, list[DeviceResult]] = {}
    for device in devices:
        if device.simulated or device.tflops_fp32 is None:
            continue
        groups.setdefault(device.model, []).append(device)
    for model, peers in groups.items():
        if len(peers) < 2:
            continue
        median = statistics.median(d.tflops_fp32 for d in peers if d.tflops_fp32 is not None)
        for device in peers:
            device.peer_median_fp32 = median
            device.peer_count = len(peers)
            value = device.tflops_fp32
            if value is not None and median > 0 and value < fraction * median:
                device.slow = True
                device.slow_reason = (
                    f"{value:.1f} TFLOP/s fp32 is {value / median:.2f}x the median "
                    f"{median:.1f} of {len(peers)} {model} GPUs"
                )


# --------------------------------------------------------------------------- verdicts


def _decide(host: HostReport, verify: Mapping[str, Any] | str | None) -> None:
    texts = [e.get("message", "") for e in host.errors] + [d.cause for d in host.diagnoses]
    failed_stages = [c for c in host.checks if c.status == "fail"]
    if host.ansible_status == "unreachable" or host.stats.get("unreachable"):
        host.verdict = UNREACHABLE
        host.reason = _first_error(host, "unreachable") or "Ansible could not reach the host"
        host.diagnoses.append(
            Diagnosis(
                id="UNREACHABLE",
                cause=f"Ansible could not connect: {host.reason}",
                fix="Check that the host is up and that SSH (address, port, user, key) works: "
                "ansible -i INVENTORY HOST -m ansible.builtin.ping",
                source="ansible",
            )
        )
        return
    if any(_REBOOT_PENDING.search(t) for t in texts):
        host.verdict = REBOOT_PENDING
        host.reason = next(t for t in texts if _REBOOT_PENDING.search(t))
        host.diagnoses.append(
            Diagnosis(
                id="REBOOT_PENDING",
                cause="The new driver needs a reboot that this run was not allowed to do.",
                fix="Reboot the host (or set tfgpu_reboot: auto), then run again.",
                source="ansible",
            )
        )
        return
    doc_status = str(verify.get("status") or "").lower() if isinstance(verify, Mapping) else ""
    if isinstance(verify, str):
        host.verdict, host.reason = FAIL, "the verify document could not be read"
        return
    if host.ansible_status == "failed" or host.stats.get("failed"):
        host.verdict = FAIL
        host.reason = _first_error(host, "failed") or "an Ansible task failed"
        if failed_stages:
            host.reason = f"verify {failed_stages[0].name}: {failed_stages[0].message}".rstrip(": ")
        _add_ansible_diagnoses(host)
        return
    if verify is None:
        host.verdict = NOT_VERIFIED
        host.reason = "no verify result came back for this host"
        return
    if doc_status == "fail" or failed_stages:
        host.verdict = FAIL
        stage = failed_stages[0] if failed_stages else None
        host.reason = (
            f"verify {stage.name}: {stage.message}".rstrip(": ") if stage else "verify failed"
        )
        return
    if doc_status != "pass":
        host.verdict = FAIL
        host.reason = f"the verify document has no pass/fail status ({doc_status or 'missing'})"
        return
    if host.simulated:
        host.verdict = SIMULATED
        host.reason = (
            f"all checks passed on {host.simulated_devices or len(host.devices)} simulated "
            "device(s); this is not a GPU result"
        )
        return
    if host.gpu_devices == 0:
        host.verdict = FAIL
        host.reason = "verify reported pass, but no GPU device ran the checks"
        return
    host.verdict = PASS
    host.reason = f"all checks passed on {host.gpu_devices} GPU(s)"


def _first_error(host: HostReport, kind: str) -> str:
    for error in host.errors:
        if error.get("kind") == kind and error.get("message"):
            task = error.get("task")
            return f"{error['message']}" + (f" (task: {task})" if task else "")
    return ""


def _add_ansible_diagnoses(host: HostReport) -> None:
    if host.diagnoses:
        return  # the preflight or the verify script already explained it
    for error in host.errors:
        host.diagnoses.append(
            Diagnosis(
                id="TASK_FAILED",
                cause=f"Task '{error.get('task', '?')}' failed: {error.get('message', '')}",
                fix="Read the task's message above; the run's artifacts hold the full output.",
                source="ansible",
            )
        )


def _provision_check(host: HostReport) -> CheckResult:
    if host.verdict == UNREACHABLE:
        return CheckResult("provision", "fail", message=host.reason)
    if host.verdict == REBOOT_PENDING:
        return CheckResult("provision", "fail", message=host.reason)
    if host.ansible_status == "failed" or host.stats.get("failed"):
        return CheckResult(
            "provision", "fail", message=_first_error(host, "failed") or "an Ansible task failed"
        )
    if host.ansible_status == "unknown":
        return CheckResult("provision", "not_run", message="the host is not in the run summary")
    stats = host.stats
    return CheckResult(
        "provision",
        "pass",
        message=f"ok={stats['ok']} changed={stats['changed']} skipped={stats['skipped']}",
    )
