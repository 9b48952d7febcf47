"""What an apt repository offers for the NVIDIA driver, and which version to install.

Used by the ``nvidia_driver`` role through its filter plugin, so that the decision (which
branch the configured repository carries, whether a pin is possible, never downgrade) lives
in tested Python instead of Jinja. Pure: every function takes command output as text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_POLICY_PACKAGE = re.compile(r"^(\S+):\s*$")
_POLICY_FIELD = re.compile(r"^\s+(Installed|Candidate):\s*(\S+)")
# A version-table line: optional "***" marker, the version, the pin priority.
_POLICY_VERSION = re.compile(r"^\s+(?:\*\*\*\s+)?(\S+)\s+(-?\d+)\s*$")
# /proc/driver/nvidia/version, proprietary and open flavours:
#   NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.154.05  Thu Dec 28 ...
#   NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.14  Release Build ...
_PROC_VERSION = re.compile(r"Kernel Module\b.*?\s(\d+\.\d+(?:\.\d+)*)\b")


def upstream_version(version: str | None) -> str | None:
    """The upstream part of a Debian or RPM version: no epoch, no packaging revision."""
    if not version:
        return None
    text = str(version).strip()
    if ":" in text:
        text = text.split(":", 1)[1]
    if "-" in text:
        text = text.rsplit("-", 1)[0]
    return text or None


def version_key(version: str | None) -> tuple[int, ...]:
    """Numeric key of an upstream version ("535.309.01" -> (535, 309, 1)); () if none."""
    text = upstream_version(version) or ""
    parts = []
    for part in text.split("."):
        match = re.match(r"\d+", part)
        if not match:
            break
        parts.append(int(match.group()))
    return tuple(parts)


def branch_of(version: str | None) -> str | None:
    """The driver branch of a version ("535.309.01-0+deb12u1" -> "535")."""
    key = version_key(version)
    return str(key[0]) if key else None


def parse_apt_policy(text: str) -> dict[str, dict[str, Any]]:
    """``apt-cache policy PKG...`` -> {package: {installed, candidate, versions}}.

    ``installed`` and ``candidate`` are None for "(none)"; ``versions`` keeps the version
    table's order (apt prints it newest first).
    """
    packages: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        head = _POLICY_PACKAGE.match(line)
        if head:
            current = {"installed": None, "candidate": None, "versions": []}
            packages[head.group(1)] = current
            continue
        if current is None:
            continue
        fld = _POLICY_FIELD.match(line)
        if fld:
            value = None if fld.group(2) == "(none)" else fld.group(2)
            current[fld.group(1).lower()] = value
            continue
        row = _POLICY_VERSION.match(line)
        if row and row.group(1) not in current["versions"]:
            current["versions"].append(row.group(1))
    return packages


def apt_candidate(policy_text: str, package: str) -> str | None:
    """The version apt would install for ``package`` (None: unknown or no candidate)."""
    entry = parse_apt_policy(policy_text).get(package) or {}
    candidate = entry.get("candidate")
    return str(candidate) if candidate else None


def proc_driver_version(text: str | None) -> str | None:
    """The loaded kernel module's version from /proc/driver/nvidia/version, or None."""
    if not text:
        return None
    match = _PROC_VERSION.search(text)
    return match.group(1) if match else None


def _deb822_stanzas(text: str) -> Iterable[dict[str, str]]:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for raw in stanza.splitlines():
            if raw.lstrip().startswith("#"):
                continue
            if raw[:1] in (" ", "\t") and key:
                fields[key] += " " + raw.strip()
                continue
            if ":" in raw:
                key, value = raw.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields:
            yield fields


def apt_components(files: Mapping[str, str]) -> list[str]:
    """Components of the enabled ``deb`` sources in {path: content} (one-line and deb822)."""
    found: list[str] = []

    def add(items: Iterable[str]) -> None:
        for item in items:
            if item not in found:
                found.append(item)

    for path, text in files.items():
        if path.endswith(".sources"):
            for fields in _deb822_stanzas(text):
                if fields.get("enabled", "yes").lower() == "no":
                    continue
                if "deb" not in fields.get("types", "").split():
                    continue
                add(fields.get("components", "").split())
            continue
        for raw in text.splitlines():
            line = re.sub(r"\[[^\]]*\]", " ", raw.split("#", 1)[0]).split()
            if len(line) >= 4 and line[0] == "deb":
                add(line[3:])
    return found


_DRIVER_NAME = re.compile(r"nvidia|cuda|libnv")


def held_candidates(dpkg_query: str, version: str, always: Iterable[str] = ()) -> list[str]:
    """Installed packages to hold: the driver's own packages, plus ``always`` when installed.

    ``dpkg_query`` is ``dpkg-query -W -f='${Package} ${Version} ${db:Status-Status}\\n'``.
    A package is the driver's when it is at the driver's exact version (every binary package
    built from the driver's source carries it: libcuda1, the DKMS module, the libraries), or
    at the same upstream version with an NVIDIA/CUDA name (NVIDIA's repository versions its
    meta packages differently, e.g. cuda-drivers-535 535.216.03-1 beside 535.216.03-0ubuntu1).
    """
    wanted = upstream_version(version)
    installed: dict[str, str] = {}
    for line in dpkg_query.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "installed":
            installed[parts[0].split(":", 1)[0]] = parts[1]
    names = {
        name
        for name, ver in installed.items()
        if ver == version or (upstream_version(ver) == wanted and _DRIVER_NAME.search(name))
    }
    names.update(name for name in always if name in installed)
    return sorted(names)


@dataclass(frozen=True)
class Offer:
    package: str
    version: str
    branch: str
    candidate: bool


@dataclass
class Choice:
    ok: bool
    msg: str
    branch: str | None = None
    version: str | None = None
    package: str | None = None
    carried: dict[str, list[str]] = field(default_factory=dict)
    installed: str | None = None

    @property
    def upstream(self) -> str | None:
        return upstream_version(self.version)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "msg": self.msg,
            "branch": self.branch,
            "version": self.version,
            "upstream": self.upstream,
            "package": self.package,
            "carried": self.carried,
            "carried_text": carried_text(self.carried),
            "installed": self.installed,
            "change": self.ok and self.version != self.installed,
        }


def offers(policy: Mapping[str, Mapping[str, Any]], package_regex: str) -> list[Offer]:
    """Every (package, version) the policy lists for packages matching ``package_regex``.

    With a group in the regex (``^cuda-drivers-([0-9]+)$``) the branch is the package name's;
    without one (``^nvidia-driver$``) it is the version's first number.
    """
    pattern = re.compile(package_regex)
    found: list[Offer] = []
    for name in sorted(policy):
        match = pattern.match(name)
        if not match:
            continue
        entry = policy[name]
        named: str | None = match.group(1) if pattern.groups else None
        for version in entry.get("versions") or []:
            branch = named or branch_of(str(version))
            if branch is None or branch != branch_of(version):
                continue
            found.append(Offer(name, str(version), branch, version == entry.get("candidate")))
    return found


def carried(found: Iterable[Offer]) -> dict[str, list[str]]:
    table: dict[str, list[str]] = {}
    for offer in found:
        versions = table.setdefault(offer.branch, [])
        if offer.version not in versions:
            versions.append(offer.version)
    for versions in table.values():
        versions.sort(key=version_key, reverse=True)
    return dict(sorted(table.items(), key=lambda item: int(item[0])))


def carried_text(table: Mapping[str, list[str]]) -> str:
    if not table:
        return "nothing"
    return "; ".join(f"R{branch}: {', '.join(versions)}" for branch, versions in table.items())


def _best(found: list[Offer]) -> Offer:
    """The candidate when one is there (what apt would install), else the newest."""
    for offer in found:
        if offer.candidate:
            return offer
    return max(found, key=lambda o: version_key(o.version))


def choose(
    found: list[Offer],
    *,
    where: str,
    pin: str | None = None,
    preferred: str | None = None,
    minimum: str | None = None,
    installed: str | None = None,
    single_package: bool = False,
) -> Choice:
    """Pick the driver version to install from what the repository offers.

    pin: a branch the user set; it must be carried. single_package: the repository has one
    driver package whose branch is whatever it carries (Debian's nvidia-driver): take the
    candidate. Otherwise (one package per branch): the preferred branch when carried, else the
    lowest carried branch that meets ``minimum``. Never a downgrade of ``installed``.
    """
    table = carried(found)
    listing = carried_text(table)
    if not found:
        return Choice(
            False,
            f"{where} offers no NVIDIA driver package, so there is nothing to install. "
            "Check that the repository is configured and its package lists are up to date.",
        )
    if pin not in (None, ""):
        pin = str(pin)
        matching = [o for o in found if o.branch == pin]
        if not matching:
            return Choice(
                False,
                f"The pinned driver branch R{pin} (tfgpu_driver_branch) is not carried by "
                f"{where}; available there: {listing}. Set tfgpu_driver_branch to one of "
                f"{', '.join(table)}, remove the pin, or use another driver source.",
                carried=table,
            )
        pick = _best(matching)
    elif single_package:
        candidates = [o for o in found if o.candidate]
        if not candidates:
            return Choice(
                False,
                f"{where} lists NVIDIA driver versions ({listing}) but apt has no candidate "
                "to install (held back or pinned away).",
                carried=table,
            )
        pick = candidates[0]
    else:
        by_branch = {b: _best([o for o in found if o.branch == b]) for b in table}
        if preferred not in (None, "") and str(preferred) in by_branch:
            pick = by_branch[str(preferred)]
        else:
            floor = version_key(minimum)
            fitting = [o for o in by_branch.values() if version_key(o.version) >= floor]
            if not fitting:
                return Choice(
                    False,
                    f"{where} carries no driver branch at or above {minimum}; it carries "
                    f"{listing}.",
                    carried=table,
                )
            pick = min(fitting, key=lambda o: int(o.branch))

    if minimum and version_key(pick.version) < version_key(minimum):
        return Choice(
            False,
            f"{where} carries driver {pick.version} (R{pick.branch}), older than {minimum}, "
            f"the minimum the CUDA version of this stack needs. It carries {listing}. Use a "
            "source with a newer branch (tfgpu_driver_source) or an older TensorFlow release.",
            carried=table,
        )
    if installed and version_key(installed) > version_key(pick.version):
        return Choice(
            False,
            f"The installed driver {installed} is newer than {pick.version} (R{pick.branch}) "
            f"from {where}, and the driver is never downgraded. Set tfgpu_driver_branch to "
            f"{branch_of(installed)} if the repository carries it, or remove the newer driver "
            "yourself.",
            carried=table,
        )
    return Choice(
        True,
        f"Driver R{pick.branch} {pick.version} ({pick.package}) from {where}; "
        f"it carries {listing}.",
        branch=pick.branch,
        version=pick.version,
        package=pick.package,
        carried=table,
        installed=installed,
    )


def plan(
    policy_text: str,
    package_regex: str,
    *,
    where: str,
    pin: str | None = None,
    preferred: str | None = None,
    minimum: str | None = None,
    installed: str | None = None,
    single_package: bool = False,
) -> dict[str, Any]:
    """``apt-cache policy`` text -> the choice as a plain dict (for the filter plugin).

    ``installed`` defaults to the newest installed version among the matched packages.
    """
    policy = parse_apt_policy(policy_text)
    found = offers(policy, package_regex)
    if not installed:
        pattern = re.compile(package_regex)
        present = [
            str(entry["installed"])
            for name, entry in policy.items()
            if pattern.match(name) and entry.get("installed")
        ]
        installed = max(present, key=version_key) if present else None
    return choose(
        found,
        where=where,
        pin=pin,
        preferred=preferred,
        minimum=minimum,
        installed=installed,
        single_package=single_package,
    ).to_dict()


_DNF_STREAM = re.compile(r"^(\S+)\s+(\d+)-dkms\b")


def dnf_module_plan(
    module_list: str,
    *,
    where: str,
    module: str = "nvidia-driver",
    pin: str | None = None,
    preferred: str | None = None,
    minimum: str | None = None,
) -> dict[str, Any]:
    """``dnf module list MODULE`` text -> the choice of a ``<branch>-dkms`` stream.

    The stream's branch stands for its version: dnf picks the newest build in the stream.
    """
    found = []
    for line in module_list.splitlines():
        match = _DNF_STREAM.match(line)
        if match and match.group(1) == module:
            branch = match.group(2)
            offer = Offer(f"{module}:{branch}-dkms", branch, branch, False)
            if offer not in found:
                found.append(offer)
    # A stream has no minor version here: compare the minimum's branch only.
    floor = branch_of(minimum)
    return choose(found, where=where, pin=pin, preferred=preferred, minimum=floor).to_dict()
