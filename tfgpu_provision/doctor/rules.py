"""The doctor's rules: data in ``data/doctor_rules.yaml``, one small check function per rule.

A check reads an :class:`~tfgpu_provision.doctor.evidence.Evidence` and returns ``None``
(the rule does not apply) or a :class:`Hit`: the evidence lines that support it, the values
its cause and fix sentences need, and flags that add the rule's ``extra`` fix lines.
:func:`diagnose` runs every rule and ranks what fired. Pure: no I/O besides reading the YAML.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tfgpu_provision.doctor.evidence import Evidence, version_tuple

RULES_PATH = Path(__file__).resolve().parent.parent / "data" / "doctor_rules.yaml"
SEVERITIES = ("error", "warning", "info")


@dataclass
class Hit:
    """Why a rule fired on one host."""

    evidence: list[str]
    values: dict[str, object] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    check: str
    severity: str
    likelihood: int
    cause: str
    fix: str
    stops: bool = False
    only_if_unexplained: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Finding:
    """One ranked explanation: evidence -> cause -> fix."""

    id: str
    title: str
    severity: str
    likelihood: int
    evidence: list[str]
    cause: str
    fix: str
    source: str = "rules"
    stops: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "severity": self.severity,
            "likelihood": self.likelihood,
            "evidence": list(self.evidence),
            "cause": self.cause,
            "fix": self.fix,
            "source": self.source,
            "stops": self.stops,
        }


class _Blank(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _fill(template: str, values: Mapping[str, object]) -> str:
    return " ".join(template.format_map(_Blank(values)).split())


Check = Callable[[Evidence], Hit | None]
CHECKS: dict[str, Check] = {}


def check(func: Check) -> Check:
    CHECKS[func.__name__] = func
    return func


@functools.cache
def load_rules(path: Path = RULES_PATH) -> tuple[Rule, ...]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    rules = []
    for raw in data["rules"]:
        rule = Rule(
            id=str(raw["id"]),
            title=str(raw["title"]),
            check=str(raw["check"]),
            severity=str(raw["severity"]),
            likelihood=int(raw["likelihood"]),
            cause=str(raw["cause"]),
            fix=str(raw["fix"]),
            stops=bool(raw.get("stops", False)),
            only_if_unexplained=bool(raw.get("only_if_unexplained", False)),
            extra={str(k): str(v) for k, v in (raw.get("extra") or {}).items()},
        )
        if rule.check not in CHECKS:
            raise ValueError(f"{path}: rule {rule.id} names unknown check {rule.check!r}")
        if rule.severity not in SEVERITIES:
            raise ValueError(f"{path}: rule {rule.id} has unknown severity {rule.severity!r}")
        rules.append(rule)
    return tuple(rules)


def _rank_key(finding: Finding) -> tuple[int, int]:
    return (SEVERITIES.index(finding.severity), -finding.likelihood)


def diagnose(ev: Evidence, extra: list[Finding] | None = None) -> list[Finding]:
    """Every finding for one host, most likely first; a stopping rule ends the list."""
    findings: list[Finding] = []
    deferred: list[Rule] = []
    for rule in load_rules():
        if rule.only_if_unexplained:
            deferred.append(rule)
            continue
        finding = _apply(rule, ev)
        if finding is not None:
            findings.append(finding)
    stoppers = [f for f in findings if f.stops]
    if stoppers:
        return [max(stoppers, key=lambda f: f.likelihood)]
    findings.extend(extra or [])
    if not any(f.severity == "error" for f in findings):
        for rule in deferred:
            finding = _apply(rule, ev)
            if finding is not None:
                findings.append(finding)
    return sorted(findings, key=_rank_key)


def _apply(rule: Rule, ev: Evidence) -> Finding | None:
    hit = CHECKS[rule.check](ev)
    if hit is None:
        return None
    values: dict[str, object] = {"host": ev.host, **hit.values}
    fix = _fill(rule.fix, values)
    extras = [_fill(text, values) for flag, text in rule.extra.items() if flag in hit.flags]
    if extras:
        fix = " ".join([*extras, fix])
    return Finding(
        id=rule.id,
        title=rule.title,
        severity=rule.severity,
        likelihood=rule.likelihood,
        evidence=hit.evidence,
        cause=_fill(rule.cause, values),
        fix=fix,
        stops=rule.stops,
    )


# --------------------------------------------------------------------------- shared evidence


def _installed_text(ev: Evidence) -> str:
    parts = list(ev.driver_packages)
    if not parts and ev.libcuda_files:
        parts.append(", ".join(ev.libcuda_files))
    if not parts and ev.driver_state not in ("absent", "unknown"):
        parts.append("nvidia-smi is present")
    return "; ".join(parts) or "driver files present"


def _module_absent_lines(ev: Evidence) -> list[str]:
    lines = ["/proc/driver/nvidia does not exist", "nvidia is not in /proc/modules"]
    message = ev.driver.get("message")
    if ev.driver_state == "not_loaded" and message:
        lines.append(f"nvidia-smi: {message}")
    if ev.cuda_init_code not in (None, 0):
        lines.append(f"cuInit: {ev.cuda_init_text()}")
    return lines


def _no_pci_line(ev: Evidence) -> str:
    return "no NVIDIA display controller on the PCI bus (vendor 10de)"


def _gpu_labels(ev: Evidence) -> str:
    names = [f"GPU {g.get('index')} {g.get('name') or ''}".strip() for g in ev.gpus]
    return ", ".join(names) or f"{ev.gpu_count} GPU(s)"


# --------------------------------------------------------------------------- the checks


@check
def no_nvidia_device(ev: Evidence) -> Hit | None:
    if ev.gpu_count or ev.nvswitch_count or ev.driver_installed or ev.cuda_devices:
        return None
    lines = [
        _no_pci_line(ev) + f" (facts from {ev.facts.get('source') or 'unknown'})",
        "no NVIDIA driver package, libcuda.so.1, nvidia-smi or kernel module",
    ]
    return Hit(evidence=lines)


@check
def driver_missing(ev: Evidence) -> Hit | None:
    if not ev.gpu_count or ev.driver_installed:
        return None
    minimum = ev.stack.get("driver", {}).get("minimum") if ev.stack else None
    return Hit(
        evidence=[
            f"PCI lists {_gpu_labels(ev)}",
            "no NVIDIA driver package, libcuda.so.1, nvidia-smi or kernel module",
        ],
        values={"gpus": _gpu_labels(ev), "minimum": minimum or "the CUDA minimum"},
    )


def _module_missing(ev: Evidence) -> bool:
    return ev.driver_installed and not ev.nvidia_loaded


# Kernel messages of a module refused for its signature (not the boot-time lockdown notice).
_SIGNING_LINES = (
    r"Key was rejected by service|module verification failed|"
    r"Lockdown: .*unsigned module|PKCS#7 signature not signed"
)


@check
def secure_boot_blocks_module(ev: Evidence) -> Hit | None:
    signing = ev.kernel_lines(_SIGNING_LINES)
    if not _module_missing(ev) or (ev.secure_boot != "enabled" and not signing):
        return None
    lines = [f"Secure Boot: {ev.secure_boot}", *_module_absent_lines(ev)[:2]]
    lines.extend(f"kernel log: {line}" for line in signing[-3:])
    return Hit(evidence=lines, values={"secure_boot": ev.secure_boot})


@check
def nouveau_loaded(ev: Evidence) -> Hit | None:
    if not ev.nouveau_loaded:
        return None
    blacklists = [
        f"{b.get('file')}"
        for b in ev.system.get("modprobe_blacklists") or []
        if isinstance(b, Mapping) and b.get("module") == "nouveau"
    ]
    lines = ["nouveau is in /proc/modules"]
    if not ev.nvidia_loaded:
        lines.append("the nvidia module is not loaded")
    lines.extend(f"kernel log: {line}" for line in ev.kernel_lines(r"nouveau")[-2:])
    lines.append(f"blacklist entries: {', '.join(blacklists) or 'none'}")
    hit = Hit(evidence=lines, values={"blacklists": ", ".join(blacklists)})
    if blacklists:
        hit.flags.add("blacklisted_already")
    return hit


@check
def module_not_loaded(ev: Evidence) -> Hit | None:
    if not _module_missing(ev):
        return None
    lines = [f"installed: {_installed_text(ev)}", *_module_absent_lines(ev)]
    hit = Hit(
        evidence=lines,
        values={"installed": _installed_text(ev), "kernel": ev.kernel_release or "$(uname -r)"},
    )
    if ev.kernel_headers is False:
        hit.flags.add("no_headers")
        lines.append(f"no kernel headers for the running kernel {ev.kernel_release}")
    dkms = ev.dkms_lines
    if dkms:
        lines.append("dkms status: " + "; ".join(dkms))
        if not any("installed" in line for line in dkms):
            hit.flags.add("dkms_not_built")
            hit.values["dkms"] = "; ".join(dkms)
    if not ev.gpu_count:
        hit.flags.add("no_pci_gpu")
        lines.append(_no_pci_line(ev))
    return hit


@check
def version_mismatch(ev: Evidence) -> Hit | None:
    library = ev.libcuda_version or ev.driver.get("library_version")
    module = ev.module_version
    lines: list[str] = []
    if ev.driver_state == "version_mismatch":
        lines.append(f"nvidia-smi: {ev.driver.get('message')}")
    if ev.cuda_init_code == 803:
        lines.append(f"cuInit: {ev.cuda_init_text()}")
    if library and module and library != module and ev.nvidia_loaded:
        lines.append(f"user-space libcuda {library}, loaded kernel module {module}")
    if not lines:
        return None
    return Hit(
        evidence=lines,
        values={
            "library": f"{library}" if library else "library",
            "module": f"{module}" if module else "(another version)",
        },
    )


_FM_RUNNING = "active"


@check
def fabric_manager_missing(ev: Evidence) -> Hit | None:
    fm = ev.fabricmanager
    active = fm.get("active") == _FM_RUNNING
    not_ready = ev.cuda_init_code == 802
    if not not_ready and not (ev.nvswitch_count and not active):
        return None
    lines = []
    if ev.nvswitch_count:
        lines.append(f"{ev.nvswitch_count} NVSwitch bridge(s) on the PCI bus")
    if not_ready:
        lines.append(f"cuInit: {ev.cuda_init_text()}")
    lines.append(f"systemctl is-active nvidia-fabricmanager: {fm.get('active') or 'unknown'}")
    why = (
        "CUDA reports the system is not yet initialized (802)."
        if not_ready
        else "This host has NVSwitches but nvidia-fabricmanager is not running."
    )
    hit = Hit(
        evidence=lines,
        values={"why": why, "driver": ev.driver.get("version") or ev.module_version or "?"},
    )
    if active:
        hit.flags.add("fm_active")
    return hit


@check
def libcuda_missing(ev: Evidence) -> Hit | None:
    if ev.cuda_status != "no_libcuda":
        return None
    if not (ev.driver_packages or ev.nvidia_loaded or ev.driver_state not in ("absent", "unknown")):
        return None
    error = str(ev.cuda.get("library", {}).get("error") or "not found")
    lines = [f"installed: {_installed_text(ev)}", f"loading libcuda.so.1: {error}"]
    return Hit(evidence=lines, values={"installed": _installed_text(ev), "error": error})


@check
def driver_below_cuda_minimum(ev: Evidence) -> Hit | None:
    stack = ev.stack
    minimum = stack.get("driver", {}).get("minimum") if stack else None
    driver = ev.driver.get("version") or ev.module_version or ev.libcuda_version
    cuda = stack.get("cuda") if stack else None
    lines = []
    have, need = version_tuple(driver), version_tuple(minimum)
    if have and need and have < need:
        lines.append(f"driver {driver} < {minimum} (minimum for CUDA {cuda})")
    built = ev.build_info.get("cuda_version") or cuda
    driver_cuda = ev.cuda.get("driver_cuda_version")
    built_v, driver_v = version_tuple(built), version_tuple(driver_cuda)
    if built_v and driver_v and driver_v[0] < built_v[0]:
        lines.append(
            f"cuDriverGetVersion: CUDA {driver_cuda}; TensorFlow is built with CUDA {built}"
        )
    if not lines:
        return None
    return Hit(
        evidence=lines,
        values={
            "driver": driver or f"supporting CUDA {driver_cuda}",
            "minimum": minimum or f"a driver for CUDA {built}",
            "cuda": built,
            "tensorflow": ev.tf_result.get("version") or stack.get("tensorflow") or "?",
        },
    )


_EXPLAINED_INIT = {0, 100, 802, 803, None}


@check
def cuda_init_failed(ev: Evidence) -> Hit | None:
    if ev.cuda_status != "init_failed" or ev.cuda_init_code in _EXPLAINED_INIT:
        return None
    if not ev.nvidia_loaded:
        return None  # the module rules explain it
    lines = [f"cuInit: {ev.cuda_init_text()}"]
    lines.extend(f"kernel log: {line}" for line in ev.kernel_lines(r"NVRM")[-3:])
    hit = Hit(evidence=lines, values={"error": ev.cuda_init_text()})
    if "dev_nvidia" in ev.system and not ev.system.get("dev_nvidia"):
        hit.flags.add("no_dev_nodes")
        lines.append("no /dev/nvidia* device files")
    return hit


@check
def cuda_visible_devices_hides_gpus(ev: Evidence) -> Hit | None:
    count = max(ev.gpu_count, len(ev.cuda_devices))
    if not count:
        return None
    for setting in ev.visible_devices():
        entries = setting.entries()
        if setting.hides_all:
            visible = 0
        else:
            valid = [e for e in entries if not e.isdigit() or int(e) < count]
            # CUDA stops at the first invalid entry: everything after it is hidden too
            first_bad = next((i for i, e in enumerate(entries) if e not in valid), None)
            visible = len(entries if first_bad is None else entries[:first_bad])
        if visible >= count:
            continue
        lines = [f"CUDA_VISIBLE_DEVICES={setting.value!r} in {setting.where}"]
        if ev.tf_gpu_count is not None:
            lines.append(f"TensorFlow lists {ev.tf_gpu_count} GPU(s) of {count}")
        return Hit(
            evidence=lines,
            values={
                "value": repr(setting.value),
                "where": setting.where,
                "visible": visible,
                "count": count,
                "all_ids": ",".join(str(i) for i in range(count)),
            },
        )
    return None


@check
def tensorflow_cpu_build(ev: Evidence) -> Hit | None:
    if not ev.tf_ran or ev.tf_result.get("built_with_cuda") is not False:
        return None
    requirement = ev.stack.get("pip_requirement") or "tensorflow[and-cuda]"
    return Hit(
        evidence=[
            f"TensorFlow {ev.tf_result.get('version')}: is_built_with_cuda() is False",
            f"packages: {', '.join(f'{k} {v}' for k, v in ev.tf_packages.items()) or 'none'}",
        ],
        values={"version": ev.tf_result.get("version"), "requirement": requirement},
    )


@check
def library_not_loaded(ev: Evidence) -> Hit | None:
    failed = ev.failed_libraries
    if not failed:
        return None
    lines = [f"{name}: {error}" for name, error in sorted(failed.items())]
    wheels = {k: v for k, v in ev.tf_packages.items() if k.startswith("nvidia-")}
    env = ev.tf_result.get("environment")
    ld_path = env.get("LD_LIBRARY_PATH") if isinstance(env, Mapping) else None
    hit = Hit(
        evidence=lines,
        values={
            "libraries": ", ".join(sorted(failed)),
            "tensorflow": ev.tf_result.get("version") or "?",
            "requirement": ev.stack.get("pip_requirement") or "tensorflow[and-cuda]",
            "wheels": ", ".join(f"{k} {v}" for k, v in sorted(wheels.items())),
            "ld_library_path": ld_path or "(unset)",
        },
    )
    pip_libs = [name for name in failed if not name.startswith("libcuda.")]
    if pip_libs and wheels:
        hit.flags.add("wheels_present")
    if any(name.startswith("libcuda.") for name in failed):
        hit.flags.add("libcuda_failed")
    if ev.tf_gpu_count is not None:
        lines.append(f"TensorFlow lists {ev.tf_gpu_count} GPU(s)")
    return hit


def _cudnn_runtime(ev: Evidence) -> tuple[str | None, str]:
    runtime = ev.tf_result.get("cudnn_runtime_version")
    if isinstance(runtime, str):
        return runtime, "cudnnGetVersion() of the library TensorFlow loaded"
    for name, version in ev.tf_packages.items():
        if name.startswith("nvidia-cudnn"):
            return version, f"the {name} wheel"
    return None, ""


@check
def cudnn_version_mismatch(ev: Evidence) -> Hit | None:
    runtime, where = _cudnn_runtime(ev)
    built_major = version_tuple(ev.build_info.get("cudnn_version"))
    matrix = version_tuple(ev.stack.get("cudnn"))
    have = version_tuple(runtime)
    if not have or not (built_major or matrix):
        return None
    need = matrix if matrix and (not built_major or matrix[0] == built_major[0]) else built_major
    assert need is not None
    wrong_major = have[0] != need[0]
    too_old = len(need) > 1 and have[0] == need[0] and have[:2] < need[:2]
    if not (wrong_major or too_old):
        return None
    built = ".".join(str(p) for p in need[:2])
    lines = [f"cuDNN loaded: {runtime} ({where})", f"TensorFlow built with cuDNN {built}"]
    conv_error = ev.tf_result.get("gpu_conv_error")
    if conv_error:
        lines.append(f"GPU convolution: {str(conv_error)[:300]}")
    cuda = version_tuple(ev.build_info.get("cuda_version") or ev.stack.get("cuda")) or (12,)
    return Hit(
        evidence=lines,
        values={
            "tensorflow": ev.tf_result.get("version") or ev.stack.get("tensorflow") or "?",
            "built": built,
            "runtime": runtime,
            "where": where,
            "cuda_major": cuda[0],
            "next_major": need[0] + 1,
        },
    )


@check
def device_memcheck_failed(ev: Evidence) -> Hit | None:
    bad = []
    for dev in ev.cuda_devices:
        memcheck = dev.get("memcheck")
        errors = [e for e in dev.get("errors") or [] if isinstance(e, Mapping)]
        if isinstance(memcheck, Mapping) and not memcheck.get("ok") and memcheck.get("error"):
            errors.append(memcheck["error"])
        if errors:
            text = "; ".join(
                f"{e.get('call', '?')}: {e.get('name')} {e.get('message') or ''}".strip()
                for e in errors
            )
            bad.append((f"GPU {dev.get('index')} {dev.get('name') or ''}".strip(), text))
    if not bad:
        return None
    lines = [f"{label}: {text}" for label, text in bad]
    lines.extend(f"kernel log: {line}" for line in ev.kernel_lines(r"Xid")[-3:])
    return Hit(
        evidence=lines,
        values={
            "devices": ", ".join(label for label, _ in bad),
            "errors": "; ".join(text for _, text in bad),
        },
    )


def _device_ccs(ev: Evidence) -> list[tuple[str, tuple[int, int]]]:
    out = []
    sources = ev.cuda_devices or ev.gpus
    for dev in sources:
        cc = version_tuple(dev.get("compute_capability"))
        if cc and len(cc) >= 2:
            label = f"GPU {dev.get('index')} {dev.get('name') or ''}".strip()
            out.append((label, (cc[0], cc[1])))
    return out


def _wheel_entries(entries: list[str]) -> list[tuple[str, tuple[int, int]]]:
    parsed = []
    for entry in entries:
        kind, _, digits = entry.partition("_")
        digits = digits.rstrip("abf")
        if kind in ("sm", "compute") and digits.isdigit() and len(digits) >= 2:
            parsed.append((kind, (int(digits[:-1]), int(digits[-1]))))
    return parsed


def _arch_gaps(ev: Evidence) -> tuple[list[str], list[str], str, str, str]:
    """(GPUs needing PTX JIT, GPUs with nothing usable, built list, source, PTX used)."""
    entries, source = ev.wheel_compute_capabilities
    wheel = _wheel_entries(entries)
    jit: list[str] = []
    none_usable: list[str] = []
    ptx_used = ""
    if not wheel:
        return jit, none_usable, "", source, ptx_used
    for label, cc in _device_ccs(ev):
        if any(k == "sm" and w[0] == cc[0] and w[1] <= cc[1] for k, w in wheel):
            continue
        ptx = [w for k, w in wheel if k == "compute" and w <= cc]
        if ptx:
            best = max(ptx)
            ptx_used = f"compute_{best[0]}{best[1]}"
            jit.append(f"{label} (compute capability {cc[0]}.{cc[1]})")
        else:
            none_usable.append(f"{label} (compute capability {cc[0]}.{cc[1]})")
    return jit, none_usable, " ".join(entries), source, ptx_used


@check
def arch_not_in_wheel(ev: Evidence) -> Hit | None:
    _, none_usable, built, source, _ = _arch_gaps(ev)
    if not none_usable:
        return None
    return Hit(
        evidence=[*none_usable, f"built for: {built} ({source})"],
        values={"gpus": ", ".join(none_usable), "built": built, "source": source},
    )


@check
def ptx_jit(ev: Evidence) -> Hit | None:
    jit, _, built, source, ptx = _arch_gaps(ev)
    if not jit:
        return None
    return Hit(
        evidence=[*jit, f"built for: {built} ({source})"],
        values={"gpus": ", ".join(jit), "built": built, "source": source, "ptx": ptx},
    )


@check
def tensorflow_sees_fewer_gpus(ev: Evidence) -> Hit | None:
    working = [d for d in ev.cuda_devices if not d.get("errors")]
    tf_count = ev.tf_gpu_count
    if tf_count is None or not working or tf_count >= len(working):
        return None
    lines = [f"CUDA driver probe: {len(working)} device(s)", f"TensorFlow: {tf_count} GPU(s)"]
    lines.extend(f"TensorFlow log: {line}" for line in ev.tf_log[-5:])
    return Hit(evidence=lines, values={"driver_count": len(working), "tf_count": tf_count})


@check
def persistence_mode_off(ev: Evidence) -> Hit | None:
    off = [f"GPU {m.get('index')}" for m in ev.persistence if m.get("mode") == "Disabled"]
    if not off:
        return None
    return Hit(
        evidence=[f"persistence mode Disabled on {', '.join(off)}"], values={"gpus": ", ".join(off)}
    )
