"""Resolve a TensorFlow request against host facts and inventory pins.

``resolve`` is pure: it reads only its arguments and the compatibility data, and
it never raises.  Host facts come from real machines and may be incomplete or
odd, so any value it cannot read counts as unknown.  Problems become findings
(a stable code, one sentence, a concrete fix), never exceptions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tfgpu_provision.compat.matrix import Matrix, TfSeries, dotted, load_matrix, plain
from tfgpu_provision.compat.versions import (
    RequestError,
    format_cc,
    parse_cc,
    parse_dotted,
    parse_major_minor,
    parse_request,
    parse_wheel_cc,
    series_of,
)

DRIVER_SOURCES = ("distro", "nvidia_repo", "none")
CUDA_SOURCES = ("pip", "conda", "nvidia_repo", "distro", "none")
CUDNN_SOURCES = ("pip", "conda", "nvidia_repo", "tarball", "none")
ENV_MANAGERS = ("conda", "venv")
# TensorFlow publishes CUDA-enabled Linux wheels for x86_64 only (DESIGN.md).
ARM_ARCHES = frozenset({"aarch64", "arm64", "armv8", "arm64e"})


@dataclass(frozen=True)
class Finding:
    """One problem or caveat: a stable code, a one-sentence message and a fix."""

    code: str
    message: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "fix": self.fix}


@dataclass(frozen=True)
class PythonPlan:
    min: str
    max: str
    selected: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"min": self.min, "max": self.max, "selected": self.selected}


@dataclass(frozen=True)
class DriverPlan:
    minimum: str
    toolkit: str
    toolkit_updates: tuple[str, ...]
    installed: str | None
    branch: str | None
    action: str  # keep | install | upgrade | none

    def to_dict(self) -> dict[str, Any]:
        return {
            "minimum": self.minimum,
            "toolkit": self.toolkit,
            "toolkit_updates": list(self.toolkit_updates),
            "installed": self.installed,
            "branch": self.branch,
            "action": self.action,
        }


@dataclass(frozen=True)
class InstallSources:
    driver: str
    cuda: str
    cudnn: str
    env: str

    def to_dict(self) -> dict[str, str]:
        return {"driver": self.driver, "cuda": self.cuda, "cudnn": self.cudnn, "env": self.env}


@dataclass(frozen=True)
class Stack:
    """Exact versions for every layer, plus the data source id behind each value."""

    tensorflow: str
    tf_series: str
    python: PythonPlan
    cuda: str
    cudnn: str
    wheel_compute_capabilities: tuple[str, ...] | None
    driver: DriverPlan
    sources: InstallSources
    pip_requirement: str
    and_cuda_pins: dict[str, str] | None
    data_sources: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "tensorflow": self.tensorflow,
            "tf_series": self.tf_series,
            "python": self.python.to_dict(),
            "cuda": self.cuda,
            "cudnn": self.cudnn,
            "wheel_compute_capabilities": plain(self.wheel_compute_capabilities),
            "driver": self.driver.to_dict(),
            "sources": self.sources.to_dict(),
            "pip_requirement": self.pip_requirement,
            "and_cuda_pins": plain(self.and_cuda_pins),
            "data_sources": dict(self.data_sources),
        }


@dataclass
class Resolution:
    request: str | None
    stack: Stack | None
    warnings: list[Finding] = field(default_factory=list)
    errors: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.stack is not None and not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "request": self.request,
            "ok": self.ok,
            "stack": self.stack.to_dict() if self.stack is not None else None,
            "warnings": [w.to_dict() for w in self.warnings],
            "errors": [e.to_dict() for e in self.errors],
        }


# --------------------------------------------------------------------------- facts


@dataclass(frozen=True)
class _Gpu:
    index: int
    name: str | None
    cc: tuple[int, int] | None

    @property
    def label(self) -> str:
        return f"GPU {self.index} ({self.name})" if self.name else f"GPU {self.index}"


@dataclass(frozen=True)
class _Facts:
    distribution: str | None
    arch: str | None
    python: tuple[int, int] | None
    gpus: tuple[_Gpu, ...]
    has_gpu: bool | None
    driver_state: str  # unknown | absent | present
    driver_version: tuple[int, ...] | None
    driver_text: str | None
    driver_loaded: bool | None


def _as_mapping(value: object) -> Mapping[Any, Any]:
    return value if isinstance(value, Mapping) else {}


def _as_text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _as_count(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _read_facts(raw: object) -> _Facts:
    facts = _as_mapping(raw)
    os_facts = _as_mapping(facts.get("os"))
    gpus: list[_Gpu] = []
    raw_gpus = facts.get("gpus")
    gpu_list = raw_gpus if isinstance(raw_gpus, list | tuple) else None
    for position, entry in enumerate(gpu_list or ()):
        if not isinstance(entry, Mapping):
            continue
        index = _as_count(entry.get("index"))
        gpus.append(
            _Gpu(
                index=position if index is None else index,
                name=_as_text(entry.get("name")),
                cc=parse_cc(entry.get("compute_capability")),
            )
        )
    count = _as_count(facts.get("gpu_count"))
    has_gpu: bool | None = None
    if gpus or (count is not None and count > 0):
        has_gpu = True
    elif count == 0 or (gpu_list is not None and count is None):
        has_gpu = False

    driver_raw = facts.get("driver")
    state, version, loaded, text = "unknown", None, None, None
    if isinstance(driver_raw, Mapping):
        loaded_raw = driver_raw.get("loaded")
        loaded = loaded_raw if isinstance(loaded_raw, bool) else None
        if "version" in driver_raw and driver_raw["version"] is None:
            state = "absent"
        else:
            version = parse_dotted(driver_raw.get("version"))
            state = "present" if version is not None else "unknown"
            text = str(driver_raw["version"]).strip() if version is not None else None
    arch = _as_text(os_facts.get("arch"))
    return _Facts(
        distribution=_as_text(os_facts.get("distribution")),
        arch=arch.lower() if arch else None,
        python=parse_major_minor(facts.get("python")),
        gpus=tuple(gpus),
        has_gpu=has_gpu,
        driver_state=state,
        driver_version=version,
        driver_text=text,
        driver_loaded=loaded,
    )


# --------------------------------------------------------------------------- pins


@dataclass(frozen=True)
class _Pins:
    driver_source: str
    driver_branch: int | None
    cuda_source: str
    cudnn_source: str
    env_manager: str
    python: tuple[int, int] | None


def _is_unset(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _choice(
    pins: Mapping[Any, Any], key: str, allowed: Sequence[str], errors: list[Finding]
) -> str | None:
    value = pins.get(key)
    if _is_unset(value):
        return None
    if isinstance(value, str) and value.strip() in allowed:
        return value.strip()
    errors.append(
        Finding(
            "PIN_INVALID",
            f"The option {key} is {_short(value)}, which is not one of {', '.join(allowed)}.",
            f"Set {key} to one of {', '.join(allowed)}, or remove it to use the default.",
        )
    )
    return None


def _read_pins(
    raw: object, facts: _Facts, series: TfSeries, errors: list[Finding]
) -> tuple[_Pins, list[Finding]]:
    pins = _as_mapping(raw)
    notes: list[Finding] = []
    env = _choice(pins, "env_manager", ENV_MANAGERS, errors) or "conda"
    driver_default = "distro" if facts.distribution == "Debian" else "nvidia_repo"
    driver = _choice(pins, "driver_source", DRIVER_SOURCES, errors) or driver_default
    cuda = _choice(pins, "cuda_source", CUDA_SOURCES, errors)
    if cuda is None:
        # The and-cuda extra is TensorFlow's own route; older series have none.
        cuda = (
            "pip" if series.and_cuda_extra.value else "conda" if env == "conda" else "nvidia_repo"
        )
    cudnn = _choice(pins, "cudnn_source", CUDNN_SOURCES, errors)
    if cudnn is None:
        cudnn = cuda if cuda in ("pip", "conda", "none") else "nvidia_repo"

    branch: int | None = None
    raw_branch = pins.get("driver_branch")
    if not _is_unset(raw_branch):
        text = str(raw_branch).strip().upper().removeprefix("R")
        if (
            isinstance(raw_branch, int | str)
            and not isinstance(raw_branch, bool)
            and text.isdigit()
        ):
            branch = int(text) if len(text) <= 6 else None
        if branch is None:
            errors.append(
                Finding(
                    "PIN_INVALID",
                    f"The option driver_branch is {_short(raw_branch)}, which is not a driver "
                    "branch number.",
                    "Set driver_branch to a branch number such as '580', or remove it.",
                )
            )
        elif driver == "none":
            notes.append(
                Finding(
                    "PIN_IGNORED",
                    f"driver_branch {branch} has no effect because driver_source is none.",
                    "Remove driver_branch, or set driver_source to distro or nvidia_repo.",
                )
            )
            branch = None

    python: tuple[int, int] | None = None
    raw_python = pins.get("python")
    if not _is_unset(raw_python):
        python = parse_major_minor(raw_python) if isinstance(raw_python, str) else None
        if python is None:
            hint = (
                " (an unquoted 3.10 in YAML becomes the number 3.1)" if _is_num(raw_python) else ""
            )
            errors.append(
                Finding(
                    "PIN_INVALID",
                    f"The option python is {_short(raw_python)}, which is not a Python version "
                    f"written as text{hint}.",
                    "Quote the version in YAML, for example python: '3.11'.",
                )
            )
    return _Pins(driver, branch, cuda, cudnn, env, python), notes


def _is_num(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --------------------------------------------------------------------------- resolve


def resolve(
    request: object,
    host_facts: object,
    pins: object,
    *,
    matrix: Matrix | None = None,
) -> Resolution:
    """Work out the stack for ``request`` on a host; never raises on bad facts or pins."""
    m = matrix if matrix is not None else load_matrix()
    try:
        target = parse_request(request, m)
    except RequestError as exc:
        return Resolution(None, None, [], [Finding(exc.code, exc.message, exc.fix or "")])
    return _Resolver(m, target, _read_facts(host_facts), pins).run()


class _Resolver:
    def __init__(self, m: Matrix, target: str, facts: _Facts, raw_pins: object) -> None:
        self.m = m
        self.target = target
        self.series = m.tensorflow[series_of(target)]
        self.facts = facts
        self.warnings: list[Finding] = []
        self.errors: list[Finding] = []
        self.pins, notes = _read_pins(raw_pins, facts, self.series, self.errors)
        self.warnings.extend(notes)
        self.cuda = self.series.cuda.value
        self.cuda_major = m.cuda_major_of(self.series)
        self.toolkit = m.toolkit_driver_of(self.series)

    def warn(self, code: str, message: str, fix: str) -> None:
        self.warnings.append(Finding(code, message, fix))

    def error(self, code: str, message: str, fix: str) -> None:
        self.errors.append(Finding(code, message, fix))

    def run(self) -> Resolution:
        s = self.series
        release = self._release()
        python = self._python()
        self._sources()
        self._gpus()
        driver = self._driver()
        pip_name = "tensorflow[and-cuda]" if self.pins.cuda_source == "pip" else "tensorflow"
        pins = s.pins_for(release) if self.pins.cuda_source == "pip" else None
        data_sources = {
            "python": s.python_min.source,
            "cuda": s.cuda.source,
            "cudnn": s.cudnn.source,
            "driver_minimum": self.cuda_major.min_driver.source,
            "driver_toolkit": self.toolkit.ga.source,
        }
        known = s.release(release)
        if known is not None:
            data_sources["tensorflow"] = known.version.source
        if s.wheel_compute_capabilities is not None:
            data_sources["wheel_compute_capabilities"] = s.wheel_compute_capabilities.source
        if pins is not None:
            data_sources["and_cuda_pins"] = pins.pins.source
        if self.facts.has_gpu is False:
            self._no_gpu(release, driver)
        stack = Stack(
            tensorflow=release,
            tf_series=s.series,
            python=python,
            cuda=self.cuda,
            cudnn=s.cudnn.value,
            wheel_compute_capabilities=s.wheel_compute_capabilities.value
            if s.wheel_compute_capabilities
            else None,
            driver=driver,
            sources=InstallSources(
                self.pins.driver_source,
                self.pins.cuda_source,
                self.pins.cudnn_source,
                self.pins.env_manager,
            ),
            pip_requirement=f"{pip_name}=={release}",
            and_cuda_pins=dict(pins.pins.value) if pins is not None else None,
            data_sources=data_sources,
        )
        return Resolution(self.target, stack, self.warnings, self.errors)

    # ---------------------------------------------------------------- release

    def _release(self) -> str:
        s = self.series
        if self.target == s.series:
            return s.default_release.version.value
        known = s.release(self.target)
        names = ", ".join(r.version.value for r in s.releases)
        if known is None:
            self.warn(
                "RELEASE_NOT_IN_DATA",
                f"TensorFlow {self.target} is not a release the compatibility data names "
                f"(it knows {names}), so the {s.series} series values are assumed for it.",
                f"Request '{s.series}' to get {s.default_release.version.value}, or check "
                f"that {self.target} exists.",
            )
        elif known.superseded_by is not None:
            newer = known.superseded_by.value
            self.warn(
                "RELEASE_SUPERSEDED",
                f"TensorFlow {self.target} was replaced by {newer} because its [and-cuda] "
                "extra pulls in packages that do not install.",
                f"Request '{newer}' or '{s.series}' instead.",
            )
        return self.target

    # ---------------------------------------------------------------- python

    def _python(self) -> PythonPlan:
        s = self.series
        lo, hi = s.python_min.value, s.python_max.value
        low, high = dotted(lo), dotted(hi)
        span = f"{lo} to {hi}"
        pin = self.pins.python
        if pin is not None:
            selected = format_cc(pin)
            if not low <= pin <= high:
                where = (
                    "the conda env"
                    if self.pins.env_manager == "conda"
                    else "the venv's interpreter"
                )
                self.error(
                    "PYTHON_OUT_OF_RANGE",
                    f"The pinned Python {selected} for {where} is outside TensorFlow "
                    f"{s.series}'s supported range {span}.",
                    f"Set python to a version from {span}, or remove the pin to use {hi}.",
                )
            return PythonPlan(lo, hi, selected)
        if self.pins.env_manager == "conda":
            # The conda env brings its own interpreter; take the newest TF supports.
            return PythonPlan(lo, hi, hi)
        host = self.facts.python
        if host is None:
            self.warn(
                "PYTHON_UNKNOWN",
                "The host's Python version is unknown, so the venv's interpreter could not "
                f"be checked against TensorFlow {s.series}'s range {span}.",
                f"Gather the host's Python facts, or pin python to a version from {span}.",
            )
            return PythonPlan(lo, hi, None)
        selected = format_cc(host)
        if not low <= host <= high:
            self.error(
                "VENV_PYTHON_OUT_OF_RANGE",
                f"The host's Python {selected} that would build the venv is outside "
                f"TensorFlow {s.series}'s supported range {span}.",
                f"Set env_manager: conda so the env brings Python {hi}, or install a Python "
                f"from {span} on the host and pin python to it.",
            )
        return PythonPlan(lo, hi, selected)

    # ---------------------------------------------------------------- sources

    def _sources(self) -> None:
        p, s = self.pins, self.series
        if p.env_manager == "venv":
            for layer, src in (("cuda_source", p.cuda_source), ("cudnn_source", p.cudnn_source)):
                if src == "conda":
                    self.error(
                        "SOURCE_CONFLICT",
                        f"{layer} conda needs a conda env, but env_manager is venv.",
                        f"Set env_manager: conda, or choose another {layer} such as pip.",
                    )
        if p.cuda_source == "pip" and not s.and_cuda_extra.value:
            newest = self.m.latest
            self.error(
                "AND_CUDA_UNAVAILABLE",
                f"TensorFlow {s.series} has no tensorflow[and-cuda] extra, so pip cannot "
                "bring its CUDA libraries.",
                f"Set cuda_source to conda or nvidia_repo, or request TensorFlow {newest}.",
            )
        if p.cuda_source == "distro":
            self.warn(
                "DISTRO_CUDA_UNCHECKED",
                f"The distribution's CUDA toolkit version is not in the compatibility data, "
                f"and TensorFlow {s.series} needs CUDA {self.cuda}.",
                "Prefer cuda_source: pip, or check the distribution package's version "
                f"matches CUDA {self.cuda}.",
            )
        unmanaged = [
            n for n, v in (("CUDA", p.cuda_source), ("cuDNN", p.cudnn_source)) if v == "none"
        ]
        if unmanaged:
            what = " and ".join(unmanaged)
            self.warn(
                "CUDA_LIBS_NOT_MANAGED",
                f"{what} will not be installed, so CUDA {self.cuda} / cuDNN "
                f"{s.cudnn.value} libraries must already be on the host.",
                "Set cuda_source and cudnn_source to pip to let the env bring them.",
            )
        if self.facts.arch in ARM_ARCHES and p.cuda_source != "none":
            self.error(
                "AARCH64_NO_CUDA_WHEELS",
                f"TensorFlow publishes no CUDA-enabled wheels for {self.facts.arch} Linux, so "
                f"cuda_source {p.cuda_source} cannot give this host a GPU TensorFlow.",
                "Run GPU TensorFlow on x86_64 hosts, or set cuda_source: none to accept a "
                "CPU-only TensorFlow here.",
            )

    # ---------------------------------------------------------------- GPUs

    def _cc_supported_by_cuda(self, cc: tuple[int, int]) -> bool:
        cm = self.cuda_major
        text = format_cc(cc)
        if text not in cm.supported_cc.value:
            return False
        since = cm.cc_since.value.get(text)
        return since is None or dotted(since) <= dotted(self.cuda)

    def _dropped(self, cc: tuple[int, int]) -> bool:
        cm = self.cuda_major
        supported = [dotted(c) for c in cm.supported_cc.value]
        return format_cc(cc) in cm.dropped_cc.value or bool(supported and cc < min(supported))

    def _gpus(self) -> None:
        cm = self.cuda_major
        supported = [dotted(c) for c in cm.supported_cc.value]
        targetable = [c for c in supported if self._cc_supported_by_cuda((c[0], c[1]))]
        unknown_cc = [g for g in self.facts.gpus if g.cc is None]
        if unknown_cc:
            labels = ", ".join(g.label for g in unknown_cc)
            self.warn(
                "GPU_CC_UNKNOWN",
                f"The compute capability of {labels} is unknown, so it could not be checked "
                f"against CUDA {self.cuda} and the TensorFlow wheel.",
                "Make sure nvidia-smi works on the host, or that the GPU's PCI id is known.",
            )
        unchecked: list[str] = []
        for gpu in self.facts.gpus:
            cc = gpu.cc
            if cc is None:
                continue
            text = format_cc(cc)
            if self._dropped(cc):
                self.error(
                    "CC_DROPPED_BY_CUDA",
                    f"{gpu.label} has compute capability {text}, which CUDA {cm.major}.x "
                    f"(needed by TensorFlow {self.series.series}) no longer supports.",
                    self._cc_fix(cc),
                )
                continue
            if self._cc_supported_by_cuda(cc):
                if self.series.wheel_compute_capabilities is None:
                    unchecked.append(f"{gpu.label} at {text}")
                else:
                    self._check_wheel(gpu, cc, newer=False)
            elif targetable and cc > max(targetable):
                self.warn(
                    "CC_NEWER_THAN_CUDA",
                    f"{gpu.label} has compute capability {text}, newer than CUDA {self.cuda} can "
                    "target, so TensorFlow can only JIT-compile PTX for it and may not work.",
                    "Expect a slow first start and check the verify stage's result; native "
                    "support needs a TensorFlow built with a newer CUDA.",
                )
                if self.series.wheel_compute_capabilities is not None:
                    self._check_wheel(gpu, cc, newer=True)
            else:
                self.warn(
                    "GPU_CC_UNRECOGNIZED",
                    f"{gpu.label} reports compute capability {text}, which the data for CUDA "
                    f"{cm.major}.x does not list.",
                    "Check the GPU's compute capability with nvidia-smi, and run the verify "
                    "stage before relying on this host.",
                )
        if unchecked:
            self.warn(
                "WHEEL_CC_UNKNOWN",
                f"The compute capabilities built into the TensorFlow {self.series.series} wheel "
                f"are not confirmed, so {'; '.join(unchecked)} could not be checked against them.",
                "Run the verify stage, which compares tf.sysconfig.get_build_info() with each GPU.",
            )

    def _check_wheel(self, gpu: _Gpu, cc: tuple[int, int], *, newer: bool) -> None:
        assert self.series.wheel_compute_capabilities is not None
        entries = [parse_wheel_cc(e) for e in self.series.wheel_compute_capabilities.value]
        parsed = [e for e in entries if e is not None]
        # A cubin built for sm_XY runs on every GPU of major X with minor >= Y.
        if any(kind == "sm" and w[0] == cc[0] and w[1] <= cc[1] for kind, w in parsed):
            return
        ptx = [w for kind, w in parsed if kind == "compute" and w <= cc]
        text = format_cc(cc)
        if ptx:
            if not newer:
                best = max(ptx)
                self.warn(
                    "CC_PTX_JIT",
                    f"The TensorFlow {self.series.series} wheel has no native code for "
                    f"{gpu.label} with compute capability {text}, so the driver JIT-compiles "
                    f"compute_{best[0]}{best[1]} PTX and the first start is slow.",
                    "Keep the default CUDA cache (~/.nv/ComputeCache) on persistent storage and "
                    "budget minutes for the first run, or use a GPU the wheel targets natively.",
                )
            return
        sass = sorted(w for kind, w in parsed if kind == "sm")
        oldest = format_cc(sass[0]) if sass else "a newer"
        self.error(
            "CC_NOT_IN_WHEEL",
            f"The TensorFlow {self.series.series} wheel has neither native code nor usable PTX "
            f"for {gpu.label} with compute capability {text}.",
            f"Choose an older TensorFlow release whose wheel still targets compute capability "
            f"{text}, or use a GPU with compute capability {oldest} or newer.",
        )

    def _cc_fix(self, cc: tuple[int, int]) -> str:
        text = format_cc(cc)
        for name in reversed(self.m.series_names):
            s = self.m.tensorflow[name]
            cm = self.m.cuda_major_of(s)
            if text in cm.supported_cc.value:
                since = cm.cc_since.value.get(text)
                if since is None or dotted(since) <= dotted(s.cuda.value):
                    return (
                        f"Request TensorFlow {name} (CUDA {s.cuda.value}), the newest release "
                        f"whose CUDA still supports compute capability {text}, or use a newer GPU."
                    )
        return f"Use a GPU that CUDA {self.cuda_major.major}.x supports."

    # ---------------------------------------------------------------- driver

    def _gpu_branch_ceiling(self) -> tuple[int, str] | None:
        """The newest branch every GPU still runs on, with the GPU that limits it."""
        ceiling: tuple[int, str] | None = None
        for gpu in self.facts.gpus:
            # A GPU the CUDA major dropped is already an error; it should not also
            # push the branch choice below what CUDA needs.
            if gpu.cc is None or self._dropped(gpu.cc):
                continue
            for limit in self.m.gpu_last_driver_branch:
                if gpu.cc <= dotted(limit.max_compute_capability.value):
                    branch = int(limit.branch.value)
                    if ceiling is None or branch < ceiling[0]:
                        ceiling = (branch, gpu.label)
                    break
        return ceiling

    def _pick_branch(self, floor: int, ceiling: int | None, current_only: bool) -> int | None:
        as_of = self.m.as_of.value
        for name, branch in self.m.driver_branches.items():
            number = int(name)
            if number < floor or (ceiling is not None and number > ceiling):
                continue
            if current_only and not branch.is_current(as_of):
                continue
            return number
        return None

    def _branch_note(self, number: int) -> None:
        branch = self.m.driver_branches.get(str(number))
        if branch is not None and not branch.is_current(self.m.as_of.value):
            self.warn(
                "DRIVER_BRANCH_UNSUPPORTED",
                f"Driver branch R{number} is not a long-term or production branch that NVIDIA "
                f"still supports as of {self.m.as_of.value}.",
                "Pin a supported branch with driver_branch when the GPUs allow it.",
            )

    def _driver(self) -> DriverPlan:
        minimum = self.cuda_major.min_driver.value
        toolkit = self.toolkit.ga.value
        updates = self.toolkit.updates.value
        min_v, tk_v = dotted(minimum), dotted(toolkit)
        installed = self.facts.driver_version
        shown = self.facts.driver_text
        tk_note = f"{toolkit}" + (f" (updates: {', '.join(updates)})" if updates else "")

        def plan(branch: int | None, action: str) -> DriverPlan:
            return DriverPlan(
                minimum, toolkit, updates, shown, str(branch) if branch else None, action
            )

        if self.facts.driver_loaded is False and installed is not None:
            self.warn(
                "DRIVER_NOT_LOADED",
                f"NVIDIA driver {shown} is installed but its kernel module is not loaded.",
                "Install kernel headers for the running kernel and rebuild the module, or reboot.",
            )
        source = self.pins.driver_source
        if source == "none":
            return self._driver_unmanaged(plan, min_v, tk_v, minimum, tk_note)
        if source == "distro" and self.pins.driver_branch is None:
            # The distribution decides the branch (Debian 12 carries R535); the driver role
            # reads what its repository carries and fails before any change if that is
            # below the minimum, so no branch is promised here.
            if installed is None:
                return plan(None, "install")
            if installed < min_v:
                return plan(None, "upgrade")
            return plan(installed[0], "keep")

        ceiling = self._gpu_branch_ceiling()
        cap = ceiling[0] if ceiling else None
        pin = self.pins.driver_branch
        if pin is not None:
            target = pin
            if pin < min_v[0]:
                self.error(
                    "DRIVER_BRANCH_TOO_OLD",
                    f"The pinned driver branch R{pin} is older than {minimum}, the minimum for "
                    f"CUDA {self.cuda} that TensorFlow {self.series.series} needs.",
                    f"Set driver_branch to {self._suggest(min_v[0], tk_v[0], cap)} or newer, "
                    "or remove the pin.",
                )
            elif pin < tk_v[0]:
                self._below_toolkit(f"The pinned driver branch R{pin}", tk_note, cap)
            if ceiling is not None and pin > ceiling[0]:
                self.error(
                    "DRIVER_BRANCH_DROPS_GPU",
                    f"The pinned driver branch R{pin} no longer supports {ceiling[1]}, whose "
                    f"last branch is R{ceiling[0]}.",
                    f"Set driver_branch to {ceiling[0]} or lower.",
                )
            self._branch_note(pin)
        else:
            picked = self._pick_branch(tk_v[0], cap, True) or self._pick_branch(tk_v[0], cap, False)
            if picked is None:
                picked = self._pick_branch(min_v[0], cap, True) or self._pick_branch(
                    min_v[0], cap, False
                )
                if picked is not None:
                    self._below_toolkit(f"Driver branch R{picked}", tk_note, cap)
            if picked is None:
                limit = f" and {ceiling[1]} (last branch R{ceiling[0]})" if ceiling else ""
                self.error(
                    "NO_DRIVER_BRANCH",
                    f"No driver branch in the data satisfies CUDA {self.cuda} (driver "
                    f"{minimum} or newer){limit}.",
                    "Pin driver_branch yourself, or change the TensorFlow release or GPUs.",
                )
                return plan(None, "install" if installed is None else "keep")
            self._branch_note(picked)
            target = picked

        if installed is None:
            return plan(target, "install")
        if installed < min_v:
            return plan(target, "upgrade")
        if pin is not None:
            if installed[0] < pin:
                return plan(target, "upgrade")
            if installed[0] > pin:
                self.warn(
                    "DRIVER_NEWER_THAN_PIN",
                    f"The installed driver {shown} is newer than the pinned branch R{pin}, and "
                    "the driver is never downgraded.",
                    f"Set driver_branch to {installed[0]} to match the host, or remove the pin.",
                )
            return plan(installed[0], "keep")
        if installed < tk_v:
            self._below_toolkit(f"The installed driver {shown}", tk_note, cap, upgrade_to=target)
        return plan(installed[0], "keep")

    def _driver_unmanaged(
        self,
        plan: Callable[[int | None, str], DriverPlan],
        min_v: tuple[int, ...],
        tk_v: tuple[int, ...],
        minimum: str,
        tk_note: str,
    ) -> DriverPlan:
        installed = self.facts.driver_version
        if installed is not None:
            shown = self.facts.driver_text
            if installed < min_v:
                self.error(
                    "DRIVER_BELOW_MINIMUM",
                    f"The installed driver {shown} is older than {minimum}, the minimum for "
                    f"CUDA {self.cuda}, and driver_source none means it will not be upgraded.",
                    f"Set driver_source to nvidia_repo or distro, or install driver {minimum} "
                    "or newer yourself.",
                )
            elif installed < tk_v:
                self._below_toolkit(f"The installed driver {shown}", tk_note, None)
            return plan(installed[0], "keep")
        if self.facts.driver_state == "absent" and self.facts.has_gpu is not False:
            self.error(
                "DRIVER_MISSING",
                "No NVIDIA driver is installed and driver_source none means none will be.",
                "Set driver_source to nvidia_repo or distro, or install the driver yourself.",
            )
        elif self.facts.driver_state == "unknown":
            self.warn(
                "DRIVER_UNKNOWN",
                "The installed NVIDIA driver version is unknown, so it could not be checked "
                f"against the minimum {minimum} for CUDA {self.cuda}.",
                "Make sure nvidia-smi works on the host, or let the driver be managed.",
            )
        return plan(None, "none")

    def _suggest(self, min_branch: int, tk_branch: int, cap: int | None) -> str:
        picked = self._pick_branch(tk_branch, cap, True) or self._pick_branch(
            min_branch, cap, False
        )
        return str(picked if picked is not None else min_branch)

    def _below_toolkit(
        self, what: str, tk_note: str, cap: int | None, upgrade_to: int | None = None
    ) -> None:
        tk_branch = dotted(self.toolkit.ga.value)[0]
        better = upgrade_to or self._pick_branch(tk_branch, cap, True)
        fix = (
            f"Set driver_branch: '{better}' to get a driver at least as new as the toolkit's."
            if better is not None
            else "Accept the limits, or use GPUs that newer driver branches support."
        )
        self.warn(
            "DRIVER_BELOW_TOOLKIT",
            f"{what} meets CUDA {self.cuda}'s minor-version minimum but is older than the "
            f"toolkit's own driver {tk_note}, so features are limited and PTX JIT of newer "
            "code fails.",
            fix,
        )

    def _no_gpu(self, release: str, driver: DriverPlan) -> None:
        parts = []
        if driver.action in ("install", "upgrade") and driver.branch:
            parts.append(f"driver branch R{driver.branch}")
        elif driver.action in ("install", "upgrade"):
            parts.append("the distribution's NVIDIA driver")
        if self.pins.cuda_source != "none":
            parts.append(f"CUDA {self.cuda} ({self.pins.cuda_source})")
        if self.pins.cudnn_source != "none":
            parts.append(f"cuDNN {self.series.cudnn.value} ({self.pins.cudnn_source})")
        parts.append(f"TensorFlow {release}")
        listed = ", ".join(parts[:-1]) + f" and {parts[-1]}" if len(parts) > 1 else parts[0]
        self.warn(
            "NO_GPU",
            "No NVIDIA GPU was found, so TensorFlow would run on the CPU only, yet the plan "
            f"still installs {listed}.",
            "If the host should have a GPU, check it with lspci -nn -d 10de: and nvidia-smi; "
            "set tfgpu_require_gpu: true to fail such hosts instead of warning.",
        )
