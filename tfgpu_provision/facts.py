"""Host facts: turn what the ``tfgpu_probe`` module collected on a host into the facts contract.

The module (``roles/gpu_preflight/library/tfgpu_probe.py``) only collects raw text on the
host; every interpretation lives here, on the controller, as pure functions, so that it can be
tested against real captured outputs (``../shared/reference/gpu-captures``).

Rules that matter to users:

* a GPU is a PCI display controller (class 03xx). NVSwitch bridges (class 0680) and the HDMI
  audio / USB functions of consumer cards are NVIDIA functions but not GPUs;
* when ``nvidia-smi`` works its GPU list is authoritative (counting the ``<gpu>`` elements, not
  ``attached_gpus``); otherwise the PCI listing (lspci, then sysfs) gives the count;
* compute capability comes from nvidia-smi when it reports one, else from ``data/gpus.yaml`` by
  PCI device id, else by product name, else it is ``None`` -- never guessed.
"""

from __future__ import annotations

import csv
import functools
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypedDict

import yaml

NVIDIA_VENDOR_ID = "10de"
GPU_DATA_PATH = Path(__file__).resolve().parent / "data" / "gpus.yaml"

DriverState = Literal["ok", "absent", "not_loaded", "no_devices", "version_mismatch", "error"]
SecureBoot = Literal["enabled", "disabled", "unknown"]
FactsSource = Literal["nvidia-smi-xml", "nvidia-smi-csv", "lspci", "sysfs", "none"]

_NA_VALUES = frozenset({"", "n/a", "[n/a]", "not supported", "[not supported]", "none"})


class SmiParseError(ValueError):
    """nvidia-smi output that is not the XML or CSV document it should be."""


class PciFunction(TypedDict):
    bus_id: str
    class_code: str
    vendor_id: str
    device_id: str
    description: str | None
    kernel_driver: str | None


class SmiGpu(TypedDict):
    index: int
    name: str | None
    uuid: str | None
    pci_id: str | None
    bus_id: str | None
    compute_capability: str | None
    memory_mib: int | None
    mig_mode: str | None
    virtualization_mode: str | None
    driver_model: str | None


class SmiReport(TypedDict):
    driver_version: str | None
    cuda_version: str | None
    attached_gpus: int | None
    gpus: list[SmiGpu]


class SmiFailure(TypedDict):
    state: DriverState
    message: str | None
    library_version: str | None


class GpuModel(TypedDict):
    pci_id: str
    name: str
    compute_capability: str
    source: str


class OsFacts(TypedDict):
    family: str | None
    distribution: str | None
    version: str | None
    arch: str | None


class KernelFacts(TypedDict):
    release: str | None
    headers: bool | None


class GpuFacts(TypedDict):
    index: int
    name: str | None
    pci_id: str | None
    bus_id: str | None
    compute_capability: str | None
    memory_mib: int | None
    mig_mode: str | None
    virtualization_mode: str | None


class DriverFacts(TypedDict):
    version: str | None
    cuda_version: str | None
    loaded: bool
    state: DriverState
    message: str | None
    library_version: str | None


class LockHolder(TypedDict):
    path: str
    pid: int
    command: str | None


class DiskFacts(TypedDict):
    path: str | None
    free_bytes: int | None


class ModuleFacts(TypedDict):
    nvidia: bool
    nouveau: bool


class PackageFacts(TypedDict):
    name: str
    version: str


class ToolkitFacts(TypedDict):
    version: str
    origin: str  # the package name or the /usr/local/cuda-X.Y directory it was read from


class EnvFacts(TypedDict):
    path: str
    state: dict[str, Any]


class InstalledFacts(TypedDict):
    """What is already installed, as plan's "current" column shows it."""

    driver_packages: list[PackageFacts]
    cuda_toolkits: list[ToolkitFacts]
    cudnn: list[PackageFacts]
    tf_envs: list[EnvFacts]


class HostFacts(TypedDict):
    os: OsFacts
    python: str | None
    kernel: KernelFacts
    secure_boot: SecureBoot
    gpus: list[GpuFacts]
    gpu_count: int
    nvswitch_count: int
    other_nvidia_functions: int
    attached_gpus: int | None
    driver: DriverFacts
    locks: list[LockHolder]
    disk: DiskFacts
    modules: ModuleFacts
    source: FactsSource
    notes: list[str]
    installed: InstalledFacts


# --------------------------------------------------------------------------- small helpers


def _clean(value: str | None) -> str | None:
    """Strip a value and map nvidia-smi's placeholders (N/A, [Not Supported]) to None."""
    if value is None:
        return None
    value = value.strip()
    return None if value.lower() in _NA_VALUES else value


def _int_prefix(value: str | None) -> int | None:
    """``"81920 MiB"`` -> 81920; None when there is no leading integer."""
    value = _clean(value)
    if value is None:
        return None
    match = re.match(r"(\d+)", value)
    return int(match.group(1)) if match else None


def normalize_bus_id(value: str | None) -> str | None:
    """Any PCI address spelling -> ``dddd:bb:dd.f`` lower case.

    nvidia-smi prints an 8-digit domain in upper case (``00000000:00:0D.0``), lspci omits the
    domain when every device is in domain 0, sysfs uses 4 digits: normalizing lets the sources
    be matched against each other.
    """
    value = _clean(value)
    if value is None:
        return None
    match = re.fullmatch(
        r"(?:([0-9a-fA-F]+):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])", value
    )
    if not match:
        return value.lower()
    domain = int(match.group(1), 16) if match.group(1) else 0
    bus, dev, fn = int(match.group(2), 16), int(match.group(3), 16), match.group(4)
    return f"{domain:04x}:{bus:02x}:{dev:02x}.{fn}"


def pci_id_from_smi(value: str | None) -> str | None:
    """nvidia-smi's ``20B210DE`` / ``0x233010DE`` (device then vendor) -> ``10de:20b2``."""
    value = _clean(value)
    if value is None:
        return None
    digits = value.lower().removeprefix("0x")
    if not re.fullmatch(r"[0-9a-f]{8}", digits):
        return None
    return f"{digits[4:]}:{digits[:4]}"


def _normalize_name(name: str) -> str:
    """Compare product names loosely: ``Tesla V100S-PCIE-32GB`` == ``Tesla V100S PCIe 32GB``."""
    words = re.sub(r"[^a-z0-9]+", " ", name.lower()).split()
    words = [w for w in words if w not in {"nvidia", "tesla", "geforce"}]
    return "".join(words)


# --------------------------------------------------------------------------- gpus.yaml


@functools.cache
def _gpu_table() -> tuple[dict[str, GpuModel], dict[str, GpuModel]]:
    data = yaml.safe_load(GPU_DATA_PATH.read_text(encoding="utf-8"))
    by_id: dict[str, GpuModel] = {}
    by_name: dict[str, GpuModel] = {}
    for device_id, row in data["gpus"].items():
        model = GpuModel(
            pci_id=f"{NVIDIA_VENDOR_ID}:{str(device_id).lower()}",
            name=str(row["name"]),
            compute_capability=str(row["cc"]),
            source=str(row["source"]),
        )
        by_id[model["pci_id"]] = model
        for name in [row["name"], *row.get("smi_names", [])]:
            by_name.setdefault(_normalize_name(str(name)), model)
    return by_id, by_name


def gpu_models() -> dict[str, GpuModel]:
    """Every known GPU model from ``data/gpus.yaml``, keyed by ``10de:xxxx``."""
    return dict(_gpu_table()[0])


def lookup_gpu(pci_id: str | None = None, name: str | None = None) -> GpuModel | None:
    """The known model for a PCI id (preferred) or, failing that, an exact normalized name."""
    by_id, by_name = _gpu_table()
    model = by_id.get(pci_id.lower()) if pci_id else None
    if model is None and name:
        model = by_name.get(_normalize_name(name))
    return GpuModel(**model) if model else None  # a copy: the cached table stays intact


# --------------------------------------------------------------------------- parsers


def _child_text(elem: ET.Element | None, path: str) -> str | None:
    if elem is None:
        return None
    found = elem.find(path)
    return _clean(found.text) if found is not None and found.text is not None else None


def parse_smi_xml(text: str) -> SmiReport:
    """Parse ``nvidia-smi -q -x``. Raises :class:`SmiParseError` on anything else."""
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError as exc:
        raise SmiParseError(f"nvidia-smi -q -x output is not XML: {exc}") from exc
    if root.tag != "nvidia_smi_log":
        raise SmiParseError(f"unexpected XML root <{root.tag}>, expected <nvidia_smi_log>")
    gpus: list[SmiGpu] = []
    # Only the <gpu> elements that are there count: a capture can claim attached_gpus=4 and
    # hold one <gpu> (see the 1of4gpus capture); inventing the missing three would be a guess.
    for index, gpu in enumerate(root.findall("gpu")):
        bus_id = _child_text(gpu, "pci/pci_bus_id") or _clean(gpu.get("id"))
        gpus.append(
            SmiGpu(
                index=index,
                name=_child_text(gpu, "product_name"),
                uuid=_child_text(gpu, "uuid"),
                pci_id=pci_id_from_smi(_child_text(gpu, "pci/pci_device_id")),
                bus_id=normalize_bus_id(bus_id),
                compute_capability=None,  # not in the XML schema; the CSV query has it
                # direct child only: MIG devices carry their own nested fb_memory_usage
                memory_mib=_int_prefix(_child_text(gpu, "fb_memory_usage/total")),
                mig_mode=_child_text(gpu, "mig_mode/current_mig"),
                virtualization_mode=_child_text(gpu, "gpu_virtualization_mode/virtualization_mode"),
                driver_model=_child_text(gpu, "driver_model/current_dm"),
            )
        )
    return SmiReport(
        driver_version=_child_text(root, "driver_version"),
        cuda_version=_child_text(root, "cuda_version"),
        attached_gpus=_int_prefix(_child_text(root, "attached_gpus")),
        gpus=gpus,
    )


_CSV_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9_.]*")


def parse_smi_csv(text: str) -> SmiReport:
    """Parse ``nvidia-smi --query-gpu=... --format=csv[,nounits]`` (header line required).

    Any set of columns is accepted; columns that are absent give None.
    """
    rows = [row for row in csv.reader(text.strip().splitlines(), skipinitialspace=True) if row]
    if not rows:
        raise SmiParseError("nvidia-smi CSV output is empty")
    header = [re.sub(r"\s*\[[^\]]*\]$", "", col.strip()) for col in rows[0]]
    if not all(_CSV_FIELD.fullmatch(col) for col in header):
        raise SmiParseError(f"not an nvidia-smi CSV header: {rows[0][:3]!r}")
    if len(rows) < 2:
        # nvidia-smi prints "No devices were found" instead of an empty table
        raise SmiParseError("nvidia-smi CSV output has a header but no GPU rows")
    gpus: list[SmiGpu] = []
    driver_version: str | None = None
    count: int | None = None
    for position, row in enumerate(rows[1:]):
        if len(row) != len(header):
            raise SmiParseError(
                f"CSV row {position + 1} has {len(row)} values for {len(header)} columns"
            )
        values = dict(zip(header, row, strict=True))
        driver_version = driver_version or _clean(values.get("driver_version"))
        count = count if count is not None else _int_prefix(values.get("count"))
        index = _int_prefix(values.get("index"))
        gpus.append(
            SmiGpu(
                index=position if index is None else index,
                name=_clean(values.get("name")),
                uuid=_clean(values.get("uuid")),
                pci_id=pci_id_from_smi(values.get("pci.device_id")),
                bus_id=normalize_bus_id(values.get("pci.bus_id")),
                compute_capability=_clean(values.get("compute_cap")),
                memory_mib=_int_prefix(values.get("memory.total")),
                mig_mode=_clean(values.get("mig.mode.current")),
                virtualization_mode=None,
                driver_model=_clean(values.get("driver_model.current")),
            )
        )
    return SmiReport(
        driver_version=driver_version, cuda_version=None, attached_gpus=count, gpus=gpus
    )


_LSPCI_LINE = re.compile(
    r"^(?P<slot>(?:[0-9a-fA-F]{4,8}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])\s+"
    r"(?P<class_name>.*?)\s*\[(?P<class>[0-9a-fA-F]{4})\]:\s*(?P<rest>.*)$"
)
_LSPCI_IDS = re.compile(r"\[(?P<vendor>[0-9a-fA-F]{4}):(?P<device>[0-9a-fA-F]{4})\]")


def parse_lspci(text: str) -> list[PciFunction]:
    """Parse ``lspci -nn`` (also ``-nnk``/``-nnkq`` detail lines) into PCI functions.

    Needs the numeric ``[cccc]`` class and ``[vvvv:dddd]`` ids that ``-nn`` prints; lines without
    them are skipped. All vendors are returned; callers filter on :data:`NVIDIA_VENDOR_ID`.
    """
    functions: list[PciFunction] = []
    for line in text.splitlines():
        if line[:1].isspace():
            driver = re.match(r"\s+Kernel driver in use:\s*(\S+)", line)
            if driver and functions:
                functions[-1]["kernel_driver"] = driver.group(1)
            continue
        match = _LSPCI_LINE.match(line.rstrip())
        if not match:
            continue
        rest = match.group("rest")
        ids = list(_LSPCI_IDS.finditer(rest))
        if not ids:
            continue
        last = ids[-1]  # the device name itself may contain brackets: the ids come last
        bus_id = normalize_bus_id(match.group("slot"))
        assert bus_id is not None  # the regex guarantees a slot
        functions.append(
            PciFunction(
                bus_id=bus_id,
                class_code=match.group("class").lower(),
                vendor_id=last.group("vendor").lower(),
                device_id=last.group("device").lower(),
                description=rest[: last.start()].strip() or None,
                kernel_driver=None,
            )
        )
    return functions


def pci_functions_from_sysfs(entries: Sequence[Mapping[str, Any]]) -> list[PciFunction]:
    """The probe's sysfs scan (``vendor``/``device``/``class`` file contents) as PCI functions."""
    functions: list[PciFunction] = []
    for entry in entries:
        vendor = str(entry.get("vendor") or "").lower().removeprefix("0x")
        device = str(entry.get("device") or "").lower().removeprefix("0x")
        pci_class = str(entry.get("class") or "").lower().removeprefix("0x")
        bus_id = normalize_bus_id(str(entry.get("address") or ""))
        if not (bus_id and len(vendor) == 4 and len(device) == 4 and len(pci_class) >= 4):
            continue
        driver = entry.get("driver")
        functions.append(
            PciFunction(
                bus_id=bus_id,
                class_code=pci_class[:4],
                vendor_id=vendor,
                device_id=device,
                description=None,
                kernel_driver=str(driver) if driver else None,
            )
        )
    return functions


_FAILURE_SIGNATURES: tuple[tuple[str, DriverState], ...] = (
    ("driver/library version mismatch", "version_mismatch"),
    ("couldn't communicate with the nvidia driver", "not_loaded"),
    ("no devices were found", "no_devices"),
)


def classify_smi_failure(text: str, rc: int | None) -> SmiFailure:
    """What an nvidia-smi failure means, from its output (rc only decides the unknown cases).

    Known texts: NVML ``Driver/library version mismatch`` (userspace updated, old kernel module
    still loaded: reboot or reload), ``couldn't communicate with the NVIDIA driver`` (no kernel
    module loaded, e.g. DKMS could not build it), ``No devices were found`` (module loaded but
    no GPU initialised).
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    library = re.search(r"NVML library version:\s*([0-9][0-9.]*)", text)
    library_version = library.group(1) if library else None
    for line in lines:
        for signature, state in _FAILURE_SIGNATURES:
            if signature in line.lower():
                return SmiFailure(state=state, message=line, library_version=library_version)
    if rc == 0:
        return SmiFailure(state="ok", message=None, library_version=library_version)
    message = lines[0] if lines else f"nvidia-smi exited {rc} without output"
    return SmiFailure(state="error", message=message, library_version=library_version)


def parse_proc_driver_version(text: str | None) -> str | None:
    """Kernel module version from ``/proc/driver/nvidia/version`` (its ``NVRM version:`` line)."""
    if not text:
        return None
    for line in text.splitlines():
        if line.startswith("NVRM version:"):
            # "... Kernel Module for x86_64  570.124.06-p2p  Release Build ..." -> 570.124.06
            match = re.search(r"\s(\d+\.\d+(?:\.\d+)?)(?=[\s-]|$)", line)
            if match:
                return match.group(1)
    return None


def parse_os_release(text: str | None) -> dict[str, str]:
    """``/etc/os-release`` key=value pairs with shell quoting removed."""
    result: dict[str, str] = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        result[key.strip()] = value
    return result


# Spelled as Ansible spells ansible_distribution / ansible_os_family, so that role vars files
# (vars/<Distribution>_<Major>.yml) and these facts agree.
_DISTRIBUTIONS = {
    "debian": "Debian",
    "ubuntu": "Ubuntu",
    "rhel": "RedHat",
    "rocky": "Rocky",
    "almalinux": "AlmaLinux",
    "centos": "CentOS",
    "fedora": "Fedora",
    "ol": "OracleLinux",
    "amzn": "Amazon",
    "sles": "SLES",
    "opensuse-leap": "openSUSE Leap",
}
_FAMILIES = {
    "debian": "Debian",
    "ubuntu": "Debian",
    "rhel": "RedHat",
    "fedora": "RedHat",
    "centos": "RedHat",
    "rocky": "RedHat",
    "almalinux": "RedHat",
    "ol": "RedHat",
    "amzn": "RedHat",
    "suse": "Suse",
    "sles": "Suse",
    "opensuse": "Suse",
}


def os_facts(os_release_text: str | None, arch: str | None) -> OsFacts:
    fields = parse_os_release(os_release_text)
    os_id = fields.get("ID", "").lower()
    family = None
    for candidate in [os_id, *fields.get("ID_LIKE", "").lower().split()]:
        if candidate in _FAMILIES:
            family = _FAMILIES[candidate]
            break
    distribution = _DISTRIBUTIONS.get(os_id) or fields.get("NAME") or None
    return OsFacts(
        family=family,
        distribution=distribution,
        version=fields.get("VERSION_ID") or None,
        arch=arch or None,
    )


def secure_boot_state(mokutil_text: str | None, efi: bool | None, efivar: int | None) -> SecureBoot:
    text = (mokutil_text or "").lower()
    if "secureboot enabled" in text:
        return "enabled"
    if "secureboot disabled" in text:
        return "disabled"
    if "efi variables are not supported" in text or "doesn't support secure boot" in text:
        return "disabled"
    if efivar is not None:
        return "enabled" if efivar == 1 else "disabled"
    if efi is False:
        return "disabled"  # legacy BIOS boot: there is no Secure Boot to enforce
    return "unknown"


# --------------------------------------------------------------------------- the contract


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _cmd_text(cmd: Mapping[str, Any]) -> str:
    return "\n".join(part for part in (_str(cmd.get("stdout")), _str(cmd.get("stderr"))) if part)


def _is_gpu_class(class_code: str) -> bool:
    return class_code.startswith("03")  # 0300 VGA, 0302 3D controller, 0380 display


def _is_nvswitch_class(class_code: str) -> bool:
    return class_code == "0680"


def _pci_inventory(raw: Mapping[str, Any]) -> tuple[list[PciFunction], FactsSource | None]:
    """NVIDIA PCI functions from lspci (preferred: it names them) or the sysfs scan."""
    lspci = _mapping(raw.get("lspci"))
    from_lspci: list[PciFunction] | None = None
    if _int(lspci.get("rc")) == 0 and isinstance(lspci.get("stdout"), str):
        from_lspci = [f for f in parse_lspci(lspci["stdout"]) if f["vendor_id"] == NVIDIA_VENDOR_ID]
    sysfs = _mapping(raw.get("sysfs_pci"))
    from_sysfs: list[PciFunction] | None = None
    if isinstance(sysfs.get("devices"), list):
        from_sysfs = [
            f
            for f in pci_functions_from_sysfs(
                [e for e in sysfs["devices"] if isinstance(e, Mapping)]
            )
            if f["vendor_id"] == NVIDIA_VENDOR_ID
        ]
    if from_lspci:
        return from_lspci, "lspci"
    if from_sysfs:
        return from_sysfs, "sysfs"
    if from_lspci is not None:
        return [], "lspci"
    if from_sysfs is not None:
        return [], "sysfs"
    return [], None


def _gpu_from_smi(gpu: SmiGpu, pci_by_bus: Mapping[str, PciFunction]) -> GpuFacts:
    pci_id = gpu["pci_id"]
    pci = pci_by_bus.get(gpu["bus_id"] or "")
    if pci_id is None and pci is not None:
        pci_id = f"{pci['vendor_id']}:{pci['device_id']}"
    model = lookup_gpu(pci_id, gpu["name"])
    cc = gpu["compute_capability"] or (model["compute_capability"] if model else None)
    return GpuFacts(
        index=gpu["index"],
        name=gpu["name"] or (model["name"] if model else None),
        pci_id=pci_id,
        bus_id=gpu["bus_id"],
        compute_capability=cc,
        memory_mib=gpu["memory_mib"],
        mig_mode=gpu["mig_mode"],
        virtualization_mode=gpu["virtualization_mode"],
    )


def _gpu_from_pci(index: int, pci: PciFunction) -> GpuFacts:
    pci_id = f"{pci['vendor_id']}:{pci['device_id']}"
    model = lookup_gpu(pci_id)
    name = model["name"] if model else None
    if name is None and pci["description"]:
        bracket = re.search(r"\[([^\]]+)\]\s*$", pci["description"])
        name = bracket.group(1) if bracket else pci["description"]
    return GpuFacts(
        index=index,
        name=name,
        pci_id=pci_id,
        bus_id=pci["bus_id"],
        compute_capability=model["compute_capability"] if model else None,
        memory_mib=None,
        mig_mode=None,
        virtualization_mode=None,
    )


def _merge_csv_into_xml(xml: SmiReport, csv_report: SmiReport | None) -> None:
    """Fill what the XML lacks (compute capability) from the CSV query of the same host."""
    if csv_report is None:
        return
    by_bus = {g["bus_id"]: g for g in csv_report["gpus"] if g["bus_id"]}
    by_index = {g["index"]: g for g in csv_report["gpus"]}
    for gpu in xml["gpus"]:
        other = by_bus.get(gpu["bus_id"]) if gpu["bus_id"] else None
        other = other or by_index.get(gpu["index"])
        if other and other["compute_capability"]:
            gpu["compute_capability"] = other["compute_capability"]


def _try_parse(cmd: Mapping[str, Any], kind: Literal["xml", "csv"]) -> SmiReport | None:
    stdout = _str(cmd.get("stdout"))
    if _int(cmd.get("rc")) != 0 or not stdout:
        return None
    try:
        return parse_smi_xml(stdout) if kind == "xml" else parse_smi_csv(stdout)
    except SmiParseError:
        return None


def _lock_holders(raw: Mapping[str, Any]) -> list[LockHolder]:
    holders: list[LockHolder] = []
    for item in _mapping(raw.get("locks")).get("holders") or []:
        item = _mapping(item)
        pid = _int(item.get("pid"))
        path = _str(item.get("path"))
        if pid is not None and path:
            holders.append(LockHolder(path=path, pid=pid, command=_str(item.get("command"))))
    return holders


def host_facts_from_probe(raw: Mapping[str, Any]) -> HostFacts:
    """The host facts contract from the ``raw`` dict that ``tfgpu_probe`` returns.

    Missing raw sections (a Windows capture has only nvidia-smi output) give None/unknown
    values rather than errors.
    """
    notes: list[str] = []
    pci, pci_source = _pci_inventory(raw)
    pci_by_bus = {f["bus_id"]: f for f in pci}
    pci_gpus = [f for f in pci if _is_gpu_class(f["class_code"])]
    nvswitch_count = sum(1 for f in pci if _is_nvswitch_class(f["class_code"]))
    other_functions = len(pci) - len(pci_gpus) - nvswitch_count

    module_names = raw.get("proc_modules")
    modules = ModuleFacts(nvidia=False, nouveau=False)
    if isinstance(module_names, list):
        modules = ModuleFacts(nvidia="nvidia" in module_names, nouveau="nouveau" in module_names)
    proc_text = _str(raw.get("proc_driver_version"))
    module_version = parse_proc_driver_version(proc_text)
    loaded = modules["nvidia"] or module_version is not None

    smi = _mapping(raw.get("nvidia_smi"))
    xml_cmd, csv_cmd = _mapping(smi.get("xml")), _mapping(smi.get("csv"))
    smi_present = bool(smi.get("path")) or bool(xml_cmd) or bool(csv_cmd)
    xml_report = _try_parse(xml_cmd, "xml") if xml_cmd else None
    csv_report = _try_parse(csv_cmd, "csv") if csv_cmd else None

    report: SmiReport | None = None
    source: FactsSource
    if xml_report is not None:
        _merge_csv_into_xml(xml_report, csv_report)
        report, source = xml_report, "nvidia-smi-xml"
    elif csv_report is not None:
        report, source = csv_report, "nvidia-smi-csv"
    else:
        source = pci_source or "none"

    driver = DriverFacts(
        version=module_version,
        cuda_version=None,
        loaded=loaded,
        state="absent",
        message=None,
        library_version=None,
    )
    if report is not None:
        driver["version"] = report["driver_version"] or module_version
        driver["cuda_version"] = report["cuda_version"]
        if report["gpus"]:
            driver["state"], driver["loaded"] = "ok", True
        else:
            driver["state"], driver["message"] = "no_devices", "nvidia-smi listed no GPU"
    elif smi_present:
        failed = xml_cmd or csv_cmd
        failure = classify_smi_failure(_cmd_text(failed), _int(failed.get("rc")))
        driver["state"], driver["message"] = failure["state"], failure["message"]
        driver["library_version"] = failure["library_version"]
        if failure["state"] == "ok":  # rc 0 but not a document we can read
            driver["state"], driver["message"] = "error", "nvidia-smi output could not be parsed"
    elif loaded:
        driver["state"] = "error"
        driver["message"] = "the nvidia kernel module is loaded but nvidia-smi is not installed"

    gpus: list[GpuFacts]
    attached: int | None = None
    if report is not None and report["gpus"]:
        gpus = [_gpu_from_smi(g, pci_by_bus) for g in report["gpus"]]
        attached = report["attached_gpus"]
        if attached is not None and attached != len(gpus):
            notes.append(
                f"nvidia-smi reports {attached} attached GPUs but lists {len(gpus)}; "
                f"only the {len(gpus)} listed are counted"
            )
        if any(g["driver_model"] in {"WDDM", "TCC", "MCDM"} for g in report["gpus"]):
            notes.append("nvidia-smi reports a Windows driver model: this is a Windows host")
        if pci_gpus and len(pci_gpus) != len(gpus):
            notes.append(
                f"PCI lists {len(pci_gpus)} NVIDIA display controllers, nvidia-smi {len(gpus)}"
            )
    else:
        gpus = [_gpu_from_pci(i, f) for i, f in enumerate(pci_gpus)]

    kernel = _mapping(raw.get("kernel"))
    headers = kernel.get("headers")
    secure = _mapping(raw.get("secure_boot"))
    efi = secure.get("efi")
    mokutil = _mapping(secure.get("mokutil"))
    python = _mapping(raw.get("python"))
    system_python = _mapping(python.get("system_python3"))
    disk_target = _mapping(_mapping(raw.get("disk")).get("target"))

    return HostFacts(
        os=os_facts(_str(raw.get("os_release")), _str(raw.get("arch"))),
        python=_str(system_python.get("version")) or _str(python.get("version")),
        kernel=KernelFacts(
            release=_str(kernel.get("release")),
            headers=headers if isinstance(headers, bool) else None,
        ),
        secure_boot=secure_boot_state(
            _cmd_text(mokutil) if mokutil else None,
            efi if isinstance(efi, bool) else None,
            _int(secure.get("efivar")),
        ),
        gpus=gpus,
        gpu_count=len(gpus),
        nvswitch_count=nvswitch_count,
        other_nvidia_functions=other_functions,
        attached_gpus=attached,
        driver=driver,
        locks=_lock_holders(raw),
        disk=DiskFacts(
            path=_str(disk_target.get("path")),
            free_bytes=_int(disk_target.get("free_bytes")),
        ),
        modules=modules,
        source=source,
        notes=notes,
        installed=installed_facts(raw.get("installed")),
    )


_TOOLKIT_PACKAGE = re.compile(r"^cuda-toolkit-(\d+)-(\d+)$")
_UPSTREAM_VERSION = re.compile(r"^(?:\d+:)?(\d+)\.(\d+)")


def installed_facts(raw: object) -> InstalledFacts:
    """Installed driver/CUDA/cuDNN packages, CUDA trees and tfgpu envs from the probe."""
    data = raw if isinstance(raw, Mapping) else {}
    packages: list[PackageFacts] = [
        PackageFacts(name=str(p["name"]), version=str(p["version"]))
        for p in data.get("packages") or []
        if isinstance(p, Mapping) and p.get("name") and p.get("version")
    ]
    toolkits: list[ToolkitFacts] = []
    for pkg in packages:
        match = _TOOLKIT_PACKAGE.match(pkg["name"])
        if match:
            toolkits.append(ToolkitFacts(version=f"{match[1]}.{match[2]}", origin=pkg["name"]))
        elif pkg["name"] == "nvidia-cuda-toolkit":
            # Debian's version looks like 11.8.89~11.8.0-5~deb12u1: the upstream part leads.
            upstream = _UPSTREAM_VERSION.match(pkg["version"])
            if upstream:
                toolkits.append(
                    ToolkitFacts(version=f"{upstream[1]}.{upstream[2]}", origin=pkg["name"])
                )
    for tree in data.get("cuda_toolkits") or []:
        if not isinstance(tree, Mapping):
            continue
        try:
            doc = json.loads(str(tree.get("version_json") or ""))
            version = str(doc["cuda"]["version"])
        except (ValueError, KeyError, TypeError):
            continue
        short = ".".join(version.split(".")[:2])
        if not any(t["version"] == short for t in toolkits):
            toolkits.append(ToolkitFacts(version=short, origin=str(tree.get("path"))))
    envs: list[EnvFacts] = []
    for env in data.get("tf_envs") or []:
        if not isinstance(env, Mapping):
            continue
        try:
            state = json.loads(str(env.get("state") or ""))
        except ValueError:
            continue
        if isinstance(state, dict):
            envs.append(EnvFacts(path=str(env.get("path")), state=state))
    return InstalledFacts(
        driver_packages=[
            p
            for p in packages
            if p["name"].startswith(("nvidia-driver", "cuda-drivers", "libcuda"))
        ],
        cuda_toolkits=toolkits,
        cudnn=[p for p in packages if p["name"].startswith(("cudnn", "libcudnn"))],
        tf_envs=envs,
    )
