"""The evidence the doctor reasons on: one host's JSON document, read through typed accessors.

The ``gpu_doctor`` role writes one document per host (schema :data:`EVIDENCE_SCHEMA`):
the preflight summary (host facts + resolved stack), the CUDA driver probe, the system state
and TensorFlow's own introspection (or why it was skipped). This module only reads it; the
rules (``rules.py``) decide what it means. Pure: no I/O beyond :func:`load`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfgpu_provision.errors import BadInput

EVIDENCE_SCHEMA = "tfgpu-provision/doctor-evidence/1"

# CUDA_VISIBLE_DEVICES values that hide every GPU.
_HIDE_ALL = {"", "-1", "none", "nodevfiles", "void"}


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def version_tuple(text: object) -> tuple[int, ...] | None:
    """``"535.261.03"`` -> (535, 261, 3); None when there is no leading number."""
    if not isinstance(text, str):
        return None
    match = re.match(r"\s*(\d+(?:\.\d+)*)", text)
    return tuple(int(p) for p in match.group(1).split(".")) if match else None


@dataclass(frozen=True)
class VisibleDevices:
    """One place that sets CUDA_VISIBLE_DEVICES, and what it leaves visible."""

    where: str
    value: str

    @property
    def hides_all(self) -> bool:
        return self.value.strip().lower() in _HIDE_ALL

    def entries(self) -> list[str]:
        return [e.strip() for e in self.value.split(",") if e.strip()]


@dataclass(frozen=True)
class Evidence:
    """One host's evidence document."""

    host: str
    doc: Mapping[str, Any]

    # ------------------------------------------------------------------ sections

    @property
    def preflight(self) -> Mapping[str, Any]:
        return _map(self.doc.get("preflight"))

    @property
    def facts(self) -> Mapping[str, Any]:
        return _map(self.preflight.get("host"))

    @property
    def stack(self) -> Mapping[str, Any]:
        return _map(_map(self.preflight.get("resolution")).get("stack"))

    @property
    def cuda(self) -> Mapping[str, Any]:
        return _map(self.doc.get("cuda_probe"))

    @property
    def system(self) -> Mapping[str, Any]:
        return _map(self.doc.get("system"))

    @property
    def tf(self) -> Mapping[str, Any]:
        return _map(self.doc.get("tensorflow"))

    @property
    def tf_result(self) -> Mapping[str, Any]:
        return _map(self.tf.get("result"))

    @property
    def tf_skipped(self) -> str | None:
        return _str(self.doc.get("tensorflow_skipped"))

    # ------------------------------------------------------------------ facts

    @property
    def gpu_count(self) -> int:
        count = self.facts.get("gpu_count")
        return count if isinstance(count, int) else 0

    @property
    def gpus(self) -> list[Mapping[str, Any]]:
        return [_map(g) for g in _list(self.facts.get("gpus"))]

    @property
    def nvswitch_count(self) -> int:
        count = self.facts.get("nvswitch_count")
        return count if isinstance(count, int) else 0

    @property
    def driver(self) -> Mapping[str, Any]:
        return _map(self.facts.get("driver"))

    @property
    def driver_state(self) -> str:
        return _str(self.driver.get("state")) or "unknown"

    @property
    def driver_packages(self) -> list[str]:
        installed = _map(self.facts.get("installed"))
        return [
            f"{_map(p).get('name')} {_map(p).get('version')}"
            for p in _list(installed.get("driver_packages"))
        ]

    @property
    def secure_boot(self) -> str:
        return _str(self.facts.get("secure_boot")) or "unknown"

    @property
    def kernel_release(self) -> str | None:
        return _str(_map(self.facts.get("kernel")).get("release")) or _str(
            self.system.get("kernel_release")
        )

    @property
    def kernel_headers(self) -> bool | None:
        headers = _map(self.facts.get("kernel")).get("headers")
        return headers if isinstance(headers, bool) else None

    # ------------------------------------------------------------------ kernel module

    @property
    def modules(self) -> list[str]:
        listed = self.system.get("modules")
        if isinstance(listed, list):
            return [str(m) for m in listed]
        mods = _map(self.facts.get("modules"))
        return [name for name in ("nvidia", "nouveau") if mods.get(name)]

    @property
    def nvidia_loaded(self) -> bool:
        return "nvidia" in self.modules or self.proc_driver_present

    @property
    def nouveau_loaded(self) -> bool:
        return "nouveau" in self.modules

    @property
    def proc_driver_present(self) -> bool:
        if "proc_driver_nvidia" in self.system:
            return bool(self.system.get("proc_driver_nvidia"))
        return bool(self.driver.get("loaded"))

    @property
    def module_version(self) -> str | None:
        text = _str(self.system.get("proc_driver_version")) or ""
        match = re.search(r"NVRM version:.*?\s(\d+\.\d+(?:\.\d+)?)(?=[\s-]|$)", text)
        if match:
            return match.group(1)
        return _str(self.driver.get("version")) if self.driver.get("loaded") else None

    @property
    def dkms_lines(self) -> list[str]:
        out = _str(_map(self.system.get("dkms_status")).get("stdout")) or ""
        return [line.strip() for line in out.splitlines() if "nvidia" in line.lower()]

    @property
    def kernel_log(self) -> Mapping[str, Any]:
        return _map(self.system.get("kernel_log"))

    def kernel_lines(self, pattern: str) -> list[str]:
        rx = re.compile(pattern, re.IGNORECASE)
        return [str(line) for line in _list(self.kernel_log.get("lines")) if rx.search(str(line))]

    @property
    def libcuda_files(self) -> list[str]:
        return [str(p) for p in _list(self.system.get("libcuda_files"))]

    # ------------------------------------------------------------------ driver installed?

    @property
    def driver_installed(self) -> bool:
        """Some part of an NVIDIA driver is on the host (packages, library, tool or module)."""
        return bool(
            self.driver_packages
            or self.libcuda_files
            or self.cuda_status not in ("no_libcuda", "missing")
            or self.driver_state not in ("absent", "unknown")
            or self.nvidia_loaded
        )

    # ------------------------------------------------------------------ CUDA probe

    @property
    def cuda_status(self) -> str:
        if not self.cuda:
            return "missing"
        return _str(self.cuda.get("status")) or "error"

    @property
    def cuda_init(self) -> Mapping[str, Any]:
        return _map(self.cuda.get("init"))

    @property
    def cuda_init_code(self) -> int | None:
        code = self.cuda_init.get("code")
        return code if isinstance(code, int) else None

    def cuda_init_text(self) -> str:
        init = self.cuda_init
        parts = [str(init.get("name") or f"error {init.get('code')}")]
        if init.get("message"):
            parts.append(f"({init['message']})")
        return " ".join(parts)

    @property
    def cuda_devices(self) -> list[Mapping[str, Any]]:
        return [_map(d) for d in _list(self.cuda.get("devices"))]

    @property
    def libcuda_version(self) -> str | None:
        version = _str(_map(self.cuda.get("library")).get("version"))
        if version:
            return version
        for path in self.libcuda_files:
            match = re.search(r"libcuda\.so\.(\d+\.\d+(?:\.\d+)?)$", path)
            if match:
                return match.group(1)
        return None

    # ------------------------------------------------------------------ TensorFlow

    @property
    def tf_ran(self) -> bool:
        return bool(self.tf_result) and "version" in self.tf_result

    @property
    def tf_gpu_count(self) -> int | None:
        if not self.tf_ran:
            return None
        return len(_list(self.tf_result.get("gpus")))

    @property
    def build_info(self) -> Mapping[str, Any]:
        return _map(self.tf_result.get("build_info"))

    @property
    def tf_log(self) -> list[str]:
        return [str(line) for line in _list(self.tf.get("log"))]

    @property
    def tf_packages(self) -> Mapping[str, str]:
        return {str(k): str(v) for k, v in _map(self.tf_result.get("packages")).items()}

    @property
    def failed_libraries(self) -> dict[str, str]:
        """Libraries TensorFlow's loader reported it could not open, with the loader's error."""
        out: dict[str, str] = {}
        for name, status in _map(self.tf.get("libraries")).items():
            status = _map(status)
            if status.get("loaded") is False:
                out[str(name)] = str(status.get("error") or "")
        return out

    @property
    def wheel_compute_capabilities(self) -> tuple[list[str], str]:
        """(entries like ``sm_80``/``compute_90``, where they came from)."""
        built = self.build_info.get("cuda_compute_capabilities")
        if isinstance(built, list) and built:
            return [str(e) for e in built], "tf.sysconfig.get_build_info()"
        listed = self.stack.get("wheel_compute_capabilities")
        if isinstance(listed, list) and listed:
            return [str(e) for e in listed], "the compatibility matrix"
        return [], ""

    # ------------------------------------------------------------------ visible devices

    def visible_devices(self) -> list[VisibleDevices]:
        found: list[VisibleDevices] = []
        wrapper = _map(self.system.get("env_wrapper"))
        value = _str(wrapper.get("cuda_visible_devices"))
        if value is not None:
            found.append(VisibleDevices(f"the env wrapper {wrapper.get('path')}", value))
        value = _str(self.system.get("etc_environment_cuda_visible_devices"))
        if value is not None:
            found.append(VisibleDevices("/etc/environment", value))
        value = _str(self.system.get("session_cuda_visible_devices"))
        if value is not None:
            found.append(VisibleDevices("the login environment", value))
        value = _str(_map(self.tf_result.get("environment")).get("CUDA_VISIBLE_DEVICES"))
        if value is not None and not any(v.value == value for v in found):
            found.append(VisibleDevices("the TensorFlow env's environment", value))
        return found

    @property
    def persistence(self) -> list[Mapping[str, Any]]:
        return [_map(m) for m in _list(self.system.get("persistence_mode"))]

    @property
    def fabricmanager(self) -> Mapping[str, Any]:
        return _map(self.system.get("fabricmanager"))


def from_document(doc: object, source: str = "evidence") -> Evidence:
    """Check a parsed evidence document and wrap it; raises BadInput when it is not one."""
    if not isinstance(doc, Mapping) or doc.get("schema") != EVIDENCE_SCHEMA:
        raise BadInput(
            f"{source} is not a doctor evidence document (schema {EVIDENCE_SCHEMA}).",
            fix="pass a file written by the gpu_doctor role (RUN_DIR/doctor/HOST.json).",
        )
    host = doc.get("host")
    return Evidence(host=str(host) if host else Path(source).stem, doc=doc)


def load(path: Path) -> Evidence:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}.", fix="check the path") from None
    except ValueError as exc:
        raise BadInput(f"{path} is not JSON: {exc}.", fix="pass an evidence JSON file") from None
    return from_document(doc, str(path))


def merge_sequences(*parts: Sequence[str]) -> list[str]:
    """Concatenate, dropping empty strings and repeats, keeping the first order."""
    seen: list[str] = []
    for part in parts:
        for item in part:
            if item and item not in seen:
                seen.append(item)
    return seen
