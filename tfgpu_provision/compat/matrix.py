"""Load and validate the compatibility data in ``matrix.yaml``.

The loader is strict on purpose: every value must name a source that the file
defines, versions must be text (an unquoted ``3.10`` in YAML is the float 3.1),
and unknown keys are rejected so that a typo cannot silently drop a constraint.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml

from tfgpu_provision.errors import TfgpuError

T = TypeVar("T")

_DOTTED = re.compile(r"^\d+(?:\.\d+)*$")
_SERIES = re.compile(r"^\d+\.\d+$")
_RELEASE = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:\.post(\d+))?$")
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_WHEEL_CC = re.compile(r"^(sm|compute)_(\d+)$")
_BRANCH = re.compile(r"^\d+$")

# Designations under which NVIDIA keeps a branch supported for a stated period.
CURRENT_DESIGNATIONS = frozenset({"LTSB", "Production Branch"})


class MatrixDataError(TfgpuError):
    """The packaged compatibility data is malformed (a defect, not user input)."""


@dataclass(frozen=True)
class Sourced(Generic[T]):
    """A value together with the id of the source it was read from."""

    value: T
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"value": plain(self.value), "source": self.source}


@dataclass(frozen=True)
class SourceInfo:
    id: str
    kind: str
    title: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "title": self.title}


@dataclass(frozen=True)
class Release:
    version: Sourced[str]
    superseded_by: Sourced[str] | None = None


@dataclass(frozen=True)
class AndCudaPins:
    release: str
    pins: Sourced[dict[str, str]]


@dataclass(frozen=True)
class TfSeries:
    series: str
    python_min: Sourced[str]
    python_max: Sourced[str]
    cuda: Sourced[str]
    cudnn: Sourced[str]
    releases: tuple[Release, ...]
    and_cuda_extra: Sourced[bool]
    wheel_compute_capabilities: Sourced[tuple[str, ...]] | None
    and_cuda_pins: tuple[AndCudaPins, ...]

    @property
    def default_release(self) -> Release:
        """The release a series request installs: the newest one the data names."""
        return self.releases[-1]

    def release(self, version: str) -> Release | None:
        return next((r for r in self.releases if r.version.value == version), None)

    def pins_for(self, version: str) -> AndCudaPins | None:
        return next((p for p in self.and_cuda_pins if p.release == version), None)


@dataclass(frozen=True)
class CudaMajor:
    major: str
    min_driver: Sourced[str]
    supported_cc: Sourced[tuple[str, ...]]
    cc_since: Sourced[dict[str, str]]
    dropped_cc: Sourced[tuple[str, ...]]


@dataclass(frozen=True)
class ToolkitDriver:
    cuda: str
    ga: Sourced[str]
    updates: Sourced[tuple[str, ...]]


@dataclass(frozen=True)
class ArchBranchLimit:
    architecture: Sourced[str]
    max_compute_capability: Sourced[str]
    branch: Sourced[str]


@dataclass(frozen=True)
class DriverBranch:
    branch: str
    designation: Sourced[str] | None
    eol: Sourced[str] | None
    end_of_life: Sourced[bool] | None
    ships_with_cuda: Sourced[str] | None

    def is_current(self, as_of: str) -> bool:
        """Whether NVIDIA still supports the branch at the data's date."""
        if self.designation is None or self.designation.value not in CURRENT_DESIGNATIONS:
            return False
        if self.end_of_life is not None and self.end_of_life.value:
            return False
        return self.eol is None or self.eol.value >= as_of


@dataclass(frozen=True)
class Matrix:
    as_of: Sourced[str]
    sources: dict[str, SourceInfo]
    tensorflow: dict[str, TfSeries]
    cuda_majors: dict[str, CudaMajor]
    toolkit_drivers: dict[str, ToolkitDriver]
    gpu_last_driver_branch: tuple[ArchBranchLimit, ...]
    driver_branches: dict[str, DriverBranch]

    @property
    def latest(self) -> str:
        """The highest TensorFlow series in the data."""
        return max(self.tensorflow, key=dotted)

    @property
    def series_names(self) -> tuple[str, ...]:
        return tuple(sorted(self.tensorflow, key=dotted))

    def cuda_major_of(self, series: TfSeries) -> CudaMajor:
        return self.cuda_majors[series.cuda.value.split(".")[0]]

    def toolkit_driver_of(self, series: TfSeries) -> ToolkitDriver:
        return self.toolkit_drivers[series.cuda.value]


def dotted(text: str) -> tuple[int, ...]:
    """Sort key for already-validated dotted numbers such as ``2.21`` or ``555.42.02``."""
    return tuple(int(part) for part in text.split("."))


def plain(value: object) -> Any:
    """Turn tuples into lists so a value can go through ``json.dumps`` unchanged."""
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------- parsing


class _Reader:
    """Validation helpers that know the set of defined source ids."""

    def __init__(self, origin: str, sources: Mapping[str, SourceInfo]) -> None:
        self.origin = origin
        self.sources = sources

    def fail(self, where: str, problem: str) -> MatrixDataError:
        return MatrixDataError(
            f"{self.origin}: {where}: {problem}.",
            fix="Correct the compatibility data file; every value needs a defined source id.",
        )

    def mapping(self, node: object, where: str, allowed: set[str]) -> Mapping[str, Any]:
        if not isinstance(node, Mapping):
            raise self.fail(where, "expected a mapping")
        extra = {str(k) for k in node} - allowed
        if extra:
            raise self.fail(where, f"unknown keys {sorted(extra)}")
        return node

    def source_id(self, node: object, where: str) -> str:
        if not isinstance(node, str) or node not in self.sources:
            raise self.fail(where, f"source {node!r} is not defined under 'sources'")
        return node

    def leaf(self, node: object, where: str, row_source: str | None = None) -> Sourced[object]:
        """A ``{value, source}`` leaf, or a bare value covered by its row's source."""
        if isinstance(node, Mapping) and "value" in node:
            self.mapping(node, where, {"value", "source", "superseded_by"})
            if "source" not in node:
                raise self.fail(where, "value has no source")
            return Sourced(node["value"], self.source_id(node["source"], where))
        if node is None:
            raise self.fail(where, "value is missing")
        if row_source is None:
            raise self.fail(where, "value has no source")
        return Sourced(node, row_source)

    def text(self, node: object, where: str, pattern: re.Pattern[str] | None = None) -> str:
        if not isinstance(node, str):
            raise self.fail(where, f"expected quoted text, got {type(node).__name__} {node!r}")
        if pattern is not None and not pattern.match(node):
            raise self.fail(where, f"{node!r} is not in the expected format")
        return node

    def texts(self, node: object, where: str, pattern: re.Pattern[str]) -> tuple[str, ...]:
        if not isinstance(node, list):
            raise self.fail(where, "expected a list")
        return tuple(self.text(item, f"{where}[{i}]", pattern) for i, item in enumerate(node))

    def sourced_text(
        self,
        node: object,
        where: str,
        pattern: re.Pattern[str] | None = None,
        row_source: str | None = None,
    ) -> Sourced[str]:
        leaf = self.leaf(node, where, row_source)
        return Sourced(self.text(leaf.value, where, pattern), leaf.source)

    def sourced_texts(
        self, node: object, where: str, pattern: re.Pattern[str], row_source: str | None = None
    ) -> Sourced[tuple[str, ...]]:
        leaf = self.leaf(node, where, row_source)
        return Sourced(self.texts(leaf.value, where, pattern), leaf.source)

    def sourced_bool(self, node: object, where: str) -> Sourced[bool]:
        leaf = self.leaf(node, where)
        if not isinstance(leaf.value, bool):
            raise self.fail(where, "expected true or false")
        return Sourced(leaf.value, leaf.source)


def _read_sources(node: object, origin: str) -> dict[str, SourceInfo]:
    reader = _Reader(origin, {})
    table = reader.mapping(node, "sources", set(node) if isinstance(node, Mapping) else set())
    out: dict[str, SourceInfo] = {}
    for key, row in table.items():
        where = f"sources.{key}"
        fields = reader.mapping(row, where, {"kind", "title"})
        out[str(key)] = SourceInfo(
            id=str(key),
            kind=reader.text(fields.get("kind"), f"{where}.kind"),
            title=reader.text(fields.get("title"), f"{where}.title"),
        )
    if not out:
        raise reader.fail("sources", "no sources are defined")
    return out


_SERIES_KEYS = {
    "python",
    "cuda",
    "cudnn",
    "releases",
    "and_cuda_extra",
    "wheel_compute_capabilities",
    "and_cuda_pins",
}


def _read_series(r: _Reader, name: str, node: object) -> TfSeries:
    where = f"tensorflow.{name}"
    if not _SERIES.match(name):
        raise r.fail(where, "series must look like '2.21'")
    row = r.mapping(node, where, _SERIES_KEYS)
    for required in ("python", "cuda", "cudnn", "releases", "and_cuda_extra"):
        if required not in row:
            raise r.fail(where, f"'{required}' is missing")
    python = r.sourced_texts(row["python"], f"{where}.python", _SERIES)
    if len(python.value) != 2 or dotted(python.value[0]) > dotted(python.value[1]):
        raise r.fail(f"{where}.python", "expected [min, max] with min <= max")
    releases = _read_releases(r, name, row["releases"])
    caps = None
    if "wheel_compute_capabilities" in row:
        caps = r.sourced_texts(
            row["wheel_compute_capabilities"], f"{where}.wheel_compute_capabilities", _WHEEL_CC
        )
    pins: list[AndCudaPins] = []
    for i, pin_row in enumerate(row.get("and_cuda_pins") or []):
        pwhere = f"{where}.and_cuda_pins[{i}]"
        fields = r.mapping(pin_row, pwhere, {"release", "source", "pins"})
        release = r.text(fields.get("release"), f"{pwhere}.release", _RELEASE)
        if release not in {rel.version.value for rel in releases}:
            raise r.fail(pwhere, f"release {release} is not listed under releases")
        table = r.mapping(fields.get("pins"), f"{pwhere}.pins", set(fields.get("pins") or {}))
        spec = {str(k): r.text(v, f"{pwhere}.pins.{k}") for k, v in table.items()}
        pins.append(AndCudaPins(release, Sourced(spec, r.source_id(fields.get("source"), pwhere))))
    return TfSeries(
        series=name,
        python_min=Sourced(python.value[0], python.source),
        python_max=Sourced(python.value[1], python.source),
        cuda=r.sourced_text(row["cuda"], f"{where}.cuda", _SERIES),
        cudnn=r.sourced_text(row["cudnn"], f"{where}.cudnn", _DOTTED),
        releases=releases,
        and_cuda_extra=r.sourced_bool(row["and_cuda_extra"], f"{where}.and_cuda_extra"),
        wheel_compute_capabilities=caps,
        and_cuda_pins=tuple(pins),
    )


def _read_releases(r: _Reader, series: str, node: object) -> tuple[Release, ...]:
    where = f"tensorflow.{series}.releases"
    if not isinstance(node, list) or not node:
        raise r.fail(where, "expected a non-empty list")
    out: list[Release] = []
    for i, item in enumerate(node):
        iwhere = f"{where}[{i}]"
        version = r.sourced_text(item, iwhere, _RELEASE)
        if not version.value.startswith(series + "."):
            raise r.fail(iwhere, f"{version.value} does not belong to series {series}")
        superseded = None
        if isinstance(item, Mapping) and "superseded_by" in item:
            superseded = r.sourced_text(item["superseded_by"], f"{iwhere}.superseded_by", _RELEASE)
        out.append(Release(version, superseded))
    return tuple(out)


def _read_cuda_major(r: _Reader, major: str, node: object) -> CudaMajor:
    where = f"cuda_majors.{major}"
    row = r.mapping(node, where, {"min_driver", "compute_capabilities"})
    ccs = r.mapping(
        row.get("compute_capabilities"),
        f"{where}.compute_capabilities",
        {"source", "supported", "since", "dropped"},
    )
    src = r.source_id(ccs.get("source"), f"{where}.compute_capabilities")
    since_node = r.mapping(ccs.get("since"), f"{where}.since", set(ccs.get("since") or {}))
    since = {
        r.text(k, f"{where}.since", _SERIES): r.text(v, f"{where}.since.{k}", _SERIES)
        for k, v in since_node.items()
    }
    return CudaMajor(
        major=major,
        min_driver=r.sourced_text(row.get("min_driver"), f"{where}.min_driver", _DOTTED),
        supported_cc=r.sourced_texts(ccs.get("supported"), f"{where}.supported", _SERIES, src),
        cc_since=Sourced(since, src),
        dropped_cc=r.sourced_texts(ccs.get("dropped"), f"{where}.dropped", _SERIES, src),
    )


def _read_toolkit_driver(r: _Reader, cuda: str, node: object) -> ToolkitDriver:
    where = f"cuda_toolkit_drivers.{cuda}"
    row = r.mapping(node, where, {"source", "ga", "updates"})
    src = r.source_id(row.get("source"), where) if "source" in row else None
    return ToolkitDriver(
        cuda=cuda,
        ga=r.sourced_text(row.get("ga"), f"{where}.ga", _DOTTED, src),
        updates=r.sourced_texts(row.get("updates"), f"{where}.updates", _DOTTED, src),
    )


def _read_arch_limit(r: _Reader, i: int, node: object) -> ArchBranchLimit:
    where = f"gpu_last_driver_branch[{i}]"
    row = r.mapping(node, where, {"source", "architecture", "max_compute_capability", "branch"})
    src = r.source_id(row.get("source"), where) if "source" in row else None
    return ArchBranchLimit(
        architecture=r.sourced_text(row.get("architecture"), f"{where}.architecture", None, src),
        max_compute_capability=r.sourced_text(
            row.get("max_compute_capability"), f"{where}.max_compute_capability", _SERIES, src
        ),
        branch=r.sourced_text(row.get("branch"), f"{where}.branch", _BRANCH, src),
    )


def _read_branch(r: _Reader, branch: str, node: object) -> DriverBranch:
    where = f"driver_branches.{branch}"
    if not _BRANCH.match(branch):
        raise r.fail(where, "branch must be a number such as '535'")
    row = r.mapping(node, where, {"designation", "eol", "end_of_life", "ships_with_cuda"})

    def opt_text(key: str, pattern: re.Pattern[str] | None) -> Sourced[str] | None:
        return r.sourced_text(row[key], f"{where}.{key}", pattern) if key in row else None

    return DriverBranch(
        branch=branch,
        designation=opt_text("designation", None),
        eol=opt_text("eol", _MONTH),
        end_of_life=r.sourced_bool(row["end_of_life"], f"{where}.end_of_life")
        if "end_of_life" in row
        else None,
        ships_with_cuda=opt_text("ships_with_cuda", _SERIES),
    )


_TOP_KEYS = {
    "schema",
    "sources",
    "as_of",
    "tensorflow",
    "cuda_majors",
    "cuda_toolkit_drivers",
    "gpu_last_driver_branch",
    "driver_branches",
}


def parse_matrix(document: object, origin: str = "matrix.yaml") -> Matrix:
    """Validate an already-parsed YAML document and build the typed matrix."""
    top = _Reader(origin, {}).mapping(document, "top level", _TOP_KEYS)
    for key in _TOP_KEYS - {"schema"}:
        if key not in top:
            raise _Reader(origin, {}).fail("top level", f"'{key}' is missing")
    r = _Reader(origin, _read_sources(top["sources"], origin))

    def table(key: str) -> Mapping[str, Any]:
        node = top[key]
        return r.mapping(node, key, {str(k) for k in node} if isinstance(node, Mapping) else set())

    series = {str(k): _read_series(r, str(k), v) for k, v in table("tensorflow").items()}
    if not series:
        raise r.fail("tensorflow", "no series are defined")
    majors = {str(k): _read_cuda_major(r, str(k), v) for k, v in table("cuda_majors").items()}
    toolkit = {
        str(k): _read_toolkit_driver(r, str(k), v) for k, v in table("cuda_toolkit_drivers").items()
    }
    limits_node = top["gpu_last_driver_branch"]
    if not isinstance(limits_node, list):
        raise r.fail("gpu_last_driver_branch", "expected a list")
    limits = tuple(_read_arch_limit(r, i, v) for i, v in enumerate(limits_node))
    branches = {str(k): _read_branch(r, str(k), v) for k, v in table("driver_branches").items()}

    for name, s in series.items():
        if s.cuda.value not in toolkit:
            raise r.fail(f"tensorflow.{name}.cuda", f"CUDA {s.cuda.value} has no toolkit driver")
        if s.cuda.value.split(".")[0] not in majors:
            raise r.fail(f"tensorflow.{name}.cuda", f"CUDA {s.cuda.value} has no major family")

    matrix = Matrix(
        as_of=r.sourced_text(top["as_of"], "as_of", _MONTH),
        sources=dict(r.sources),
        tensorflow={k: series[k] for k in sorted(series, key=dotted)},
        cuda_majors=majors,
        toolkit_drivers=toolkit,
        gpu_last_driver_branch=tuple(
            sorted(limits, key=lambda row: dotted(row.max_compute_capability.value))
        ),
        driver_branches={k: branches[k] for k in sorted(branches, key=int)},
    )
    return matrix


def load_matrix(path: Path | str | None = None) -> Matrix:
    """Load the packaged matrix (cached) or, for tests, a matrix file at ``path``."""
    if path is None:
        return _packaged_matrix()
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise MatrixDataError(f"Cannot read the compatibility data {file}: {exc}.") from exc
    return _parse_text(text, str(file))


@functools.cache
def _packaged_matrix() -> Matrix:
    text = resources.files(__package__).joinpath("matrix.yaml").read_text(encoding="utf-8")
    return _parse_text(text, "matrix.yaml")


def _parse_text(text: str, origin: str) -> Matrix:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MatrixDataError(f"{origin} is not valid YAML: {exc}.") from exc
    return parse_matrix(document, origin)
