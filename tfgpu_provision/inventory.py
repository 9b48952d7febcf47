"""Find, read and validate an inventory before anything touches a host.

We read inventories ourselves instead of asking Ansible so that every problem can name the
file and line it comes from, and so that validation never contacts a host.

What is read
    A directory holds ``hosts.yml`` (or ``hosts.yaml`` / ``hosts.ini`` / ``hosts``) plus
    ``group_vars/`` and ``host_vars/`` beside it; a single file gets the ``group_vars/`` and
    ``host_vars/`` of its directory, as Ansible does. ``group_vars/<name>`` may be a file
    (``.yml``, ``.yaml`` or no extension) and/or a directory of ``*.yml``/``*.yaml`` files
    read in name order. Other files in the directory are ignored.

    YAML inventories follow Ansible's YAML inventory format (``all``/``children``/``hosts``/
    ``vars``, host ranges like ``node[01:04]``, ``name:port``). INI inventories are parsed
    minimally: ``[group]``, ``[group:vars]``, ``[group:children]`` and ``host k=v`` lines. INI
    values are text to Ansible, so ``"true"`` and digit strings are accepted where a bool or
    an int is expected, as they are for ``-e key=value``.

    Vault-encrypted files and ``!vault`` values cannot be read without the vault password;
    they are skipped (files) or accepted unchecked (values).

Variable precedence (lowest first; a later layer replaces a value, dicts are not merged)
    1. inline group vars in the inventory file, groups ordered by depth then name
       (``all`` < a parent group < its child group; siblings: the later name wins)
    2. ``group_vars/`` files, same group order
    3. inline host vars in the inventory file (a host listed twice: the later one wins)
    4. ``host_vars/`` files
    This is Ansible's order for inventory variables; playbook vars and ``-e`` come on top.
"""

from __future__ import annotations

import ast
import difflib
import functools
import ipaddress
import json
import os
import re
import shlex
import string
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tfgpu_provision.errors import BadInput

GPU_GROUP = "gpu_nodes"
OPTION_PREFIX = "tfgpu_"
HOSTS_FILE_NAMES = ("hosts.yml", "hosts.yaml", "hosts.ini", "hosts")
YAML_SUFFIXES = (".yml", ".yaml")
SANDBOX_ROOT = Path(".cache") / "tfgpu-provision" / "sandbox"  # under the user's home

_TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
_FALSE_WORDS = frozenset({"false", "no", "off", "0"})
_HOST_NAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
_HOST_RANGE = re.compile(r"^(?P<head>[^\[\]]*)\[(?P<range>[^\[\]]+)\](?P<tail>.*)$")
_PERCENT = re.compile(r"^(?P<n>[0-9]+)%$")
_TEMPLATE_MARKERS = ("{{", "{%")


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Origin:
    """Where a value was written: a file and a 1-based line (0 when not known)."""

    file: Path
    line: int = 0

    def __str__(self) -> str:
        shown = _show_path(self.file)
        return f"{shown}:{self.line}" if self.line else shown


@dataclass(frozen=True)
class Assignment:
    """One ``key: value`` written for a group or a host, before precedence is applied."""

    scope: str  # "group" or "host"
    target: str  # the group or host name
    key: str
    value: Any
    origin: Origin
    layer: int  # 1-4, see the module docstring
    raw: str | None = None  # the YAML scalar as written, to explain YAML's type guesses
    text_values: bool = False  # INI: values are text, so "true" / "22" are accepted


@dataclass
class Inventory:
    """An inventory as read from disk, with each host's variables merged by precedence."""

    path: Path
    hosts: dict[str, dict[str, Any]]
    groups: dict[str, list[str]]  # group -> every host in it or in its children
    origins: dict[str, dict[str, Origin]]  # host -> variable -> where its winning value is
    host_origins: dict[str, Origin] = field(default_factory=dict)
    group_origins: dict[str, Origin] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=dict)
    assignments: list[Assignment] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    hosts_file: Path | None = None

    def gpu_nodes(self) -> list[str]:
        """The hosts of the ``gpu_nodes`` group (including its child groups), in order."""
        return list(self.groups.get(GPU_GROUP, []))

    def options_for(self, host: str) -> dict[str, Any]:
        """Every option for ``host``: the inventory's value, else the schema's default."""
        merged = {name: opt.default for name, opt in options().items()}
        merged.update({k: v for k, v in self.hosts[host].items() if k in merged})
        return merged


@dataclass(frozen=True)
class Option:
    """One entry of ``options.yaml``."""

    name: str
    type: str
    doc: str
    default: Any = None
    choices: tuple[str, ...] = ()
    items: str | None = None
    min: int | None = None
    max: int | None = None
    pattern: str | None = None
    example: Any = None


# --------------------------------------------------------------------------- schema

_OPTION_TYPES = frozenset({"str", "int", "bool", "list", "dict", "int_or_percent"})
OPTIONS_FILE = Path(__file__).with_name("options.yaml")


@functools.cache
def options() -> dict[str, Option]:
    """The option schema from ``options.yaml``, keyed by option name, in file order."""
    data = yaml.safe_load(OPTIONS_FILE.read_text(encoding="utf-8"))
    result: dict[str, Option] = {}
    for name, spec in data["options"].items():
        if spec["type"] not in _OPTION_TYPES:
            raise ValueError(f"{OPTIONS_FILE}: {name}: unknown type {spec['type']!r}")
        result[name] = Option(
            name=name,
            type=spec["type"],
            doc=spec["doc"],
            default=spec.get("default"),
            choices=tuple(spec.get("choices") or ()),
            items=spec.get("items"),
            min=spec.get("min"),
            max=spec.get("max"),
            pattern=spec.get("pattern"),
            example=spec.get("example"),
        )
    return result


def defaults() -> dict[str, Any]:
    """Each option's default (``None`` = unset, resolved later per OS or by the engine)."""
    return {name: opt.default for name, opt in options().items()}


# --------------------------------------------------------------------------- locate


def content_root() -> Path:
    """The directory holding ansible.cfg, playbooks/, roles/ and inventory/.

    From a source checkout that is the checkout; from an installed wheel it is the copy the
    wheel carries in ``tfgpu_provision/_content``.
    """
    package_dir = Path(__file__).resolve().parent
    checkout = package_dir.parent
    if (checkout / "ansible.cfg").is_file() and (checkout / "playbooks").is_dir():
        return checkout
    packaged = package_dir / "_content"
    if packaged.is_dir():
        return packaged
    return checkout


def sandbox_inventory(name: str) -> Path:
    """Where the sandbox writes the inventory of its lab ``name``."""
    return Path.home() / SANDBOX_ROOT / name / "inventory.yml"


def locate(name_or_path: str, *, search_root: Path | None = None) -> Path:
    """Turn ``--inventory`` into a path: an existing path as given, else a named inventory.

    A name is looked up, first match wins, as ``./inventory/<name>/`` in the current
    directory (users' own inventories), ``<search_root>/inventory/<name>/`` (the shipped
    ones; ``search_root`` defaults to :func:`content_root`), then the sandbox lab
    ``~/.cache/tfgpu-provision/sandbox/<name>/inventory.yml``.
    """
    if not name_or_path.strip():
        raise BadInput("the inventory name is empty.", fix="pass --inventory lab or a path.")
    given = Path(name_or_path).expanduser()
    if given.exists():
        return given.absolute()
    if _looks_like_path(name_or_path):
        raise BadInput(
            f"inventory '{name_or_path}' not found (looked in: {given.absolute()}).",
            fix="check the path, or pass the name of an inventory such as 'lab'.",
        )
    root = search_root if search_root is not None else content_root()
    candidates = [
        Path.cwd() / "inventory" / name_or_path,
        root / "inventory" / name_or_path,
        sandbox_inventory(name_or_path),
    ]
    candidates = list(dict.fromkeys(c.absolute() for c in candidates))
    for candidate in candidates:
        if candidate.exists():
            return candidate
    known = sorted(
        {p.name for base in {Path.cwd(), root} for p in _inventory_dirs(base / "inventory")}
    )
    hint = _did_you_mean(name_or_path, known)
    looked = ", ".join(str(c) for c in candidates)
    raise BadInput(
        f"inventory '{name_or_path}' not found (looked in: {looked}).{hint}",
        fix=f"pass one of: {', '.join(known)}, or a path to an inventory directory or file."
        if known
        else "pass a path to an inventory directory or file.",
    )


def _looks_like_path(text: str) -> bool:
    return (
        "/" in text
        or os.sep in text
        or text.startswith((".", "~"))
        or text.endswith((".yml", ".yaml", ".ini", ".json"))
    )


def _inventory_dirs(base: Path) -> Iterator[Path]:
    if base.is_dir():
        yield from (p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))


# --------------------------------------------------------------------------- YAML with lines


class LineMap(dict[Any, Any]):
    """A YAML mapping that remembers the line of each key and the raw text of scalars."""

    line: int = 0
    lines: dict[Any, int]
    raws: dict[Any, str]

    def __init__(self) -> None:
        super().__init__()
        self.lines = {}
        self.raws = {}


class VaultValue(str):
    """A ``!vault`` value: encrypted, so it cannot be checked."""


class _LineLoader(yaml.SafeLoader):
    """SafeLoader (YAML 1.1 types, as Ansible reads them) that records line numbers."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineMap:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            key = loader.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if isinstance(key, str) and key in seen:
                raise _DuplicateKey(key, seen[key], line)
            if isinstance(key, str):
                seen[key] = line
    loader.flatten_mapping(node)
    result = LineMap()
    result.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                "found a key that is a list or mapping",
                key_node.start_mark,
            ) from None
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = key_node.start_mark.line + 1
        if isinstance(value_node, yaml.ScalarNode):
            result.raws[key] = value_node.value
    return result


def _construct_vault(loader: _LineLoader, node: yaml.Node) -> VaultValue:
    return VaultValue(loader.construct_scalar(node))  # type: ignore[arg-type]


def _construct_unsafe(loader: _LineLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return _construct_mapping(loader, node)  # type: ignore[arg-type]


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor("!vault", _construct_vault)
_LineLoader.add_constructor("!unsafe", _construct_unsafe)


class _DuplicateKey(Exception):
    def __init__(self, key: str, first: int, again: int) -> None:
        super().__init__(key)
        self.key, self.first, self.again = key, first, again


def _read_yaml(path: Path, *, what: str) -> tuple[Any, bool]:
    """Parse ``path``; returns (data, vaulted). Raises BadInput with file:line on any problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(
            f"{_show_path(path)}: {what} not found.", fix="check the inventory path."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(
            f"{_show_path(path)}: cannot read {what}: {_one_line(str(exc))}.",
            fix="make it a readable UTF-8 text file.",
        ) from None
    if text.lstrip().startswith("$ANSIBLE_VAULT"):
        return None, True
    try:
        data = yaml.load(text, Loader=_LineLoader)
    except _DuplicateKey as dup:
        raise BadInput(
            f"{_show_path(path)}:{dup.again}: '{dup.key}' is set twice in the same mapping "
            f"(first on line {dup.first}); YAML keeps only the last one.",
            fix="delete one of the two lines.",
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        unclosed = "quoted scalar" in (exc.context or "") and exc.context_mark is not None
        if unclosed:  # the error is found at the end of the file; the quote opens earlier
            mark = exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        where = f"{_show_path(path)}:{line}" if line else _show_path(path)
        problem = _one_line(exc.problem or exc.context or "cannot parse")
        fix = (
            "close the quote that opens on this line."
            if unclosed
            else _yaml_fix(problem, text, line)
        )
        raise BadInput(f"{where}: YAML syntax error: {problem}.", fix=fix) from None
    except yaml.YAMLError as exc:
        raise BadInput(
            f"{_show_path(path)}: YAML error: {_one_line(str(exc))}.",
            fix="check the file's YAML syntax.",
        ) from None
    return data, False


def _yaml_fix(problem: str, text: str, line: int) -> str:
    if "\\t" in problem or "'\\t'" in problem or "tab" in problem:
        return "indent with spaces, not tabs."
    lines = text.splitlines()
    bad = lines[line - 1] if 0 < line <= len(lines) else ""
    if bad.count('"') % 2 or bad.count("'") % 2:
        return "close the quote on that line."
    if "mapping values are not allowed" in problem:
        return "put a space after each ':' and quote values that contain ': '."
    return f"check the indentation and quoting on line {line} and the line above it."


# --------------------------------------------------------------------------- load


@dataclass
class _Group:
    name: str
    origin: Origin
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    parents: set[str] = field(default_factory=set)


class _Builder:
    """Collects groups, hosts and variable assignments while files are read."""

    def __init__(self, path: Path, hosts_file: Path) -> None:
        self.path = path
        self.hosts_file = hosts_file
        self.groups: dict[str, _Group] = {}
        self.host_origins: dict[str, Origin] = {}
        self.assignments: list[Assignment] = []
        self.files: list[Path] = [hosts_file]
        self.warnings: list[str] = []

    def group(self, name: str, origin: Origin) -> _Group:
        if name not in self.groups:
            self.groups[name] = _Group(name, origin)
        return self.groups[name]

    def add_child(self, parent: str, child: str, origin: Origin) -> None:
        if parent == child or parent in self._descendants(child):
            raise BadInput(
                f"{origin}: group '{child}' is made a child of '{parent}', which is already "
                f"inside '{child}': a loop.",
                fix=f"remove '{child}' from the children of '{parent}'.",
            )
        g = self.group(parent, origin)
        if child not in g.children:
            g.children.append(child)
        self.group(child, origin).parents.add(parent)

    def add_host(self, group: str, host: str, origin: Origin) -> None:
        self.host_origins.setdefault(host, origin)
        g = self.group(group, origin)
        if host not in g.hosts:
            g.hosts.append(host)

    def add_vars(
        self,
        scope: str,
        target: str,
        data: Mapping[Any, Any],
        file: Path,
        layer: int,
        *,
        text_values: bool = False,
    ) -> None:
        lines = getattr(data, "lines", {})
        raws = getattr(data, "raws", {})
        for key, value in data.items():
            origin = Origin(file, lines.get(key, getattr(data, "line", 0)))
            if not isinstance(key, str):
                raise BadInput(
                    f"{origin}: variable name {key!r} is not text.",
                    fix="variable names are words like tfgpu_env_name; quote or rename it.",
                )
            self.assignments.append(
                Assignment(scope, target, key, value, origin, layer, raws.get(key), text_values)
            )

    def _descendants(self, name: str) -> set[str]:
        seen: set[str] = set()
        todo = [name]
        while todo:
            g = self.groups.get(todo.pop())
            if g is None:
                continue
            for c in g.children:
                if c not in seen:
                    seen.add(c)
                    todo.append(c)
        return seen


def load(path: Path | str) -> Inventory:
    """Read the inventory at ``path`` (a directory or a file) with merged host variables.

    Raises BadInput (exit code 2) for anything that cannot be read into an inventory; call
    :func:`validate` to check the options.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise BadInput(
            f"inventory '{_show_path(path)}' not found.", fix="check the inventory path."
        )
    if path.is_dir():
        hosts_file = next((path / n for n in HOSTS_FILE_NAMES if (path / n).is_file()), None)
        if hosts_file is None:
            raise BadInput(
                f"{_show_path(path)}: no hosts file in this inventory directory "
                f"(looked for {', '.join(HOSTS_FILE_NAMES)}).",
                fix="add a hosts.yml with a 'gpu_nodes' group (copy inventory/lab/hosts.yml).",
            )
        base = path
    else:
        hosts_file = path
        base = path.parent
    builder = _Builder(path, hosts_file)
    builder.group("all", Origin(hosts_file, 1))
    if _is_ini(hosts_file):
        _parse_ini(builder, hosts_file)
    else:
        _parse_yaml_hosts(builder, hosts_file)
    _read_vars_dirs(builder, base)
    return _finish(builder)


def _is_ini(path: Path) -> bool:
    if path.suffix == ".ini":
        return True
    if path.suffix in YAML_SUFFIXES:
        return False
    try:
        head = path.read_text(encoding="utf-8", errors="replace").lstrip()
    except OSError:
        return False
    return head.startswith("[") and not head.startswith("[{")


def _parse_yaml_hosts(b: _Builder, file: Path) -> None:
    data, vaulted = _read_yaml(file, what="inventory file")
    if vaulted:
        raise BadInput(
            f"{_show_path(file)}: the hosts file is vault-encrypted; it cannot be checked.",
            fix="keep the hosts file in clear text and put secrets in vaulted group_vars.",
        )
    if data is None:
        raise BadInput(
            f"{_show_path(file)}:1: the inventory file is empty.",
            fix="list your hosts under all: children: gpu_nodes: hosts: "
            "(see inventory/lab/hosts.yml).",
        )
    if not isinstance(data, LineMap):
        raise BadInput(
            f"{_at_start(file)}: the inventory must be a mapping of groups "
            f"(all:, gpu_nodes:), not {_kind(data)}.",
            fix="start the file with 'all:' and list hosts under children: gpu_nodes: hosts:.",
        )
    for name, body in data.items():
        origin = Origin(file, data.lines.get(name, 1))
        _yaml_group(b, file, _group_name(name, origin), body, origin, parent=None)


def _group_name(name: Any, origin: Origin) -> str:
    if not isinstance(name, str) or not name:
        raise BadInput(
            f"{origin}: group name {name!r} is not text.", fix="use a name like gpu_nodes."
        )
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise BadInput(
            f"{origin}: '{name}' is not a valid group name (letters, digits and _ only).",
            fix=f"rename it to {re.sub(r'[^A-Za-z0-9_]', '_', name)!r}.",
        )
    return name


def _yaml_group(
    b: _Builder, file: Path, name: str, body: Any, origin: Origin, parent: str | None
) -> None:
    b.group(name, origin)
    if parent is not None:
        b.add_child(parent, name, origin)
    elif name != "all":
        b.add_child("all", name, origin)
    if body is None:
        return
    if not isinstance(body, LineMap):
        raise BadInput(
            f"{origin}: group '{name}' must be a mapping with hosts:, children: or vars:, "
            f"not {_kind(body)}.",
            fix=f"write '{name}:' then, indented, 'hosts:' and one 'hostname:' per line.",
        )
    for key, value in body.items():
        where = Origin(file, body.lines.get(key, origin.line))
        if key == "hosts":
            _yaml_hosts(b, file, name, value, where)
        elif key == "children":
            if value is None:
                continue
            if not isinstance(value, LineMap):
                raise BadInput(
                    f"{where}: children of group '{name}' must be a mapping of group names, "
                    f"not {_kind(value)}.",
                    fix="write each child group as 'groupname:' on its own line under children:.",
                )
            for child, child_body in value.items():
                child_origin = Origin(file, value.lines.get(child, where.line))
                _yaml_group(
                    b, file, _group_name(child, child_origin), child_body, child_origin, name
                )
        elif key == "vars":
            if value is None:
                continue
            if not isinstance(value, LineMap):
                raise BadInput(
                    f"{where}: vars of group '{name}' must be a mapping of name: value, "
                    f"not {_kind(value)}.",
                    fix="write one 'variable: value' per line under vars:.",
                )
            b.add_vars("group", name, value, file, 1)
        else:
            looks_like_host = isinstance(value, LineMap) or value is None
            fix = (
                f"hosts go under a 'hosts:' key: {name}: hosts: {key}: ..."
                if looks_like_host
                else "variables go under a 'vars:' key of the group."
            )
            raise BadInput(
                f"{where}: unexpected key '{key}' in group '{name}' "
                "(a group holds only hosts:, children: and vars:).",
                fix=fix,
            )


def _yaml_hosts(b: _Builder, file: Path, group: str, value: Any, where: Origin) -> None:
    if value is None:
        return
    if not isinstance(value, LineMap):
        example = value[0] if isinstance(value, list) and value else "node1"
        raise BadInput(
            f"{where}: hosts of group '{group}' must be a mapping (hostname: vars), "
            f"not {_kind(value)}.",
            fix=f"write each host as '{example}:' on its own line under hosts:.",
        )
    for raw_name, host_vars in value.items():
        origin = Origin(file, value.lines.get(raw_name, where.line))
        names, port = _expand_host_pattern(raw_name, origin)
        if host_vars is not None and not isinstance(host_vars, LineMap):
            raise BadInput(
                f"{origin}: host '{raw_name}' must map to its variables (or nothing), "
                f"not {_kind(host_vars)}.",
                fix=f"write '{raw_name}:' with 'ansible_host: ...' indented below it, "
                f"or just '{raw_name}:'.",
            )
        for host in names:
            b.add_host(group, host, origin)
            if port is not None:
                b.assignments.append(Assignment("host", host, "ansible_port", port, origin, 3))
            if host_vars:
                b.add_vars("host", host, host_vars, file, 3)


def _expand_host_pattern(raw: Any, origin: Origin) -> tuple[list[str], int | None]:
    """``node[01:03]:2222`` -> ([node01, node02, node03], 2222), checking each name."""
    if isinstance(raw, bool) or raw is None or isinstance(raw, float):
        raise BadInput(
            f"{origin}: host name {raw!r} is read by YAML as {_kind(raw)}, not a name.",
            fix="quote the host name.",
        )
    if not isinstance(raw, (str, int)):
        raise BadInput(f"{origin}: host name {raw!r} is not text.", fix="use a host name.")
    text = str(raw).strip()
    port: int | None = None
    try:
        ipaddress.ip_address(text)
        return [text], None
    except ValueError:
        pass
    base, sep, port_text = text.rpartition(":")
    if sep and "]" not in port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise BadInput(
                f"{origin}: '{text}' is not a valid host name (a port after ':' must be "
                "a number 1-65535).",
                fix="use 'name:2222', or set ansible_port under the host.",
            )
        text, port = base, int(port_text)
    names = _expand_ranges(text, origin)
    for name in names:
        if not _valid_host_name(name):
            raise BadInput(
                f"{origin}: '{name}' is not a valid host name (letters, digits, '.', '-' "
                "and '_'; no spaces or '/').",
                fix="use the machine's DNS name or an alias, and put its address in ansible_host.",
            )
    return names, port


def _expand_ranges(text: str, origin: Origin) -> list[str]:
    match = _HOST_RANGE.match(text)
    if match is None:
        return [text]
    parts = match["range"].split(":")
    if len(parts) not in (2, 3):
        raise BadInput(
            f"{origin}: host range '[{match['range']}]' must be [start:end] or [start:end:step].",
            fix="write e.g. node[01:04].",
        )
    start, end = parts[0], parts[1]
    step = int(parts[2]) if len(parts) == 3 and parts[2].isdigit() else 1
    if start.isdigit() and end.isdigit() and int(start) <= int(end):
        width = len(start) if start.startswith("0") else 0
        items = [str(i).zfill(width) for i in range(int(start), int(end) + 1, step)]
    elif (
        len(start) == 1
        and len(end) == 1
        and start in string.ascii_letters
        and end in string.ascii_letters
        and start <= end
    ):
        items = [chr(c) for c in range(ord(start), ord(end) + 1, step)]
    else:
        raise BadInput(
            f"{origin}: host range '[{match['range']}]' is not a valid range.",
            fix="use numbers (node[01:04]) or single letters (node[a:d]), start <= end.",
        )
    tails = _expand_ranges(match["tail"], origin)
    return [f"{match['head']}{item}{tail}" for item in items for tail in tails]


def _valid_host_name(name: str) -> bool:
    if _HOST_NAME.match(name):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _parse_ini(b: _Builder, file: Path) -> None:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(
            f"{_show_path(file)}: cannot read the inventory: {_one_line(str(exc))}.",
            fix="make it a readable UTF-8 text file.",
        ) from None
    if not text.strip():
        raise BadInput(
            f"{_show_path(file)}:1: the inventory file is empty.",
            fix="add a [gpu_nodes] section with one host per line.",
        )
    group, kind = "ungrouped", "hosts"
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        origin = Origin(file, number)
        if stripped.startswith("["):
            section = re.fullmatch(r"\[([^\]:]+)(?::(vars|children))?\]", stripped)
            if section is None:
                raise BadInput(
                    f"{origin}: '{stripped}' is not a section header.",
                    fix="use [group], [group:vars] or [group:children].",
                )
            group = _group_name(section[1], origin)
            kind = section[2] or "hosts"
            b.group(group, origin)
            if group != "all" and not b.groups[group].parents:
                b.add_child("all", group, origin)
            continue
        if kind == "vars":
            key, sep, value = stripped.partition("=")
            if not sep:
                raise BadInput(
                    f"{origin}: '{stripped}' in [{group}:vars] is not key=value.",
                    fix="write one variable=value per line.",
                )
            pair = LineMap()
            pair[key.strip()] = _ini_value(value.strip())
            pair.lines[key.strip()] = number
            b.add_vars("group", group, pair, file, 1, text_values=True)
        elif kind == "children":
            child = _group_name(stripped, origin)
            b.add_child(group, child, origin)
        else:
            try:
                tokens = shlex.split(stripped, comments=True)
            except ValueError as exc:
                raise BadInput(
                    f"{origin}: cannot split this host line: {exc}.", fix="close the quote."
                ) from None
            names, port = _expand_host_pattern(tokens[0], origin)
            host_vars = LineMap()
            for token in tokens[1:]:
                key, sep, value = token.partition("=")
                if not sep:
                    raise BadInput(
                        f"{origin}: '{token}' after host '{tokens[0]}' is not key=value.",
                        fix="write host variables as key=value.",
                    )
                host_vars[key] = _ini_value(value)
                host_vars.lines[key] = number
            for host in names:
                b.add_host(group, host, origin)
                if port is not None:
                    b.assignments.append(Assignment("host", host, "ansible_port", port, origin, 3))
                b.add_vars("host", host, host_vars, file, 3, text_values=True)


def _ini_value(text: str) -> Any:
    # Ansible turns INI values into Python literals when they are ones, else keeps the text.
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _read_vars_dirs(b: _Builder, base: Path) -> None:
    for scope, dirname, layer, known in (
        ("group", "group_vars", 2, set(b.groups)),
        ("host", "host_vars", 4, set(b.host_origins)),
    ):
        folder = base / dirname
        if not folder.is_dir():
            continue
        entries: dict[str, list[Path]] = {}
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                files = sorted(
                    p for p in entry.rglob("*") if p.is_file() and p.suffix in YAML_SUFFIXES
                )
                entries.setdefault(entry.name, []).extend(files)
            elif entry.suffix in YAML_SUFFIXES or entry.suffix == "":
                stem = entry.stem if entry.suffix in YAML_SUFFIXES else entry.name
                entries.setdefault(stem, []).insert(0, entry)
        for target, files in entries.items():
            if target not in known and files:
                noun = "group" if scope == "group" else "host"
                hint = _did_you_mean(target, sorted(known))
                raise BadInput(
                    f"{_at_start(files[0])}: no {noun} named '{target}' in "
                    f"{_show_path(b.hosts_file)}, so these variables would apply to nothing."
                    f"{hint}",
                    fix=f"rename the file after a {noun} of the inventory, or delete it.",
                )
            for file in files:
                data, vaulted = _read_yaml(file, what=f"{dirname} file")
                b.files.append(file)
                if vaulted:
                    b.warnings.append(f"{_show_path(file)}: vault-encrypted; not checked.")
                    continue
                if data is None:
                    continue
                if not isinstance(data, LineMap):
                    raise BadInput(
                        f"{_at_start(file)}: a {dirname} file must be a mapping of "
                        f"variable: value, not {_kind(data)}.",
                        fix="write one 'variable: value' per line, without a leading '- '.",
                    )
                b.add_vars(scope, target, data, file, layer)


def _finish(b: _Builder) -> Inventory:
    depth: dict[str, int] = {}

    def depth_of(name: str) -> int:
        if name not in depth:
            parents = b.groups[name].parents
            depth[name] = 0 if not parents else 1 + max(depth_of(p) for p in parents)
        return depth[name]

    members: dict[str, list[str]] = {}

    def hosts_of(name: str) -> list[str]:
        if name not in members:
            found = list(b.groups[name].hosts)
            for child in b.groups[name].children:
                found.extend(h for h in hosts_of(child) if h not in found)
            members[name] = found
        return members[name]

    all_hosts = list(b.host_origins)
    grouped = {h for g in b.groups.values() if g.name not in ("all", "ungrouped") for h in g.hosts}
    for host in all_hosts:
        if host not in grouped:
            b.add_host("ungrouped", host, b.host_origins[host])
    if "ungrouped" in b.groups and "all" not in b.groups["ungrouped"].parents:
        b.add_child("all", "ungrouped", b.groups["ungrouped"].origin)
    groups = {name: hosts_of(name) for name in b.groups}
    groups["all"] = all_hosts

    host_groups: dict[str, list[str]] = {h: [] for h in all_hosts}
    for name, hosts in groups.items():
        for h in hosts:
            host_groups[h].append(name)

    by_target: dict[tuple[str, str], list[Assignment]] = {}
    for a in b.assignments:
        by_target.setdefault((a.scope, a.target), []).append(a)

    merged: dict[str, dict[str, Any]] = {}
    origins: dict[str, dict[str, Origin]] = {}
    for host in all_hosts:
        ordered = sorted(host_groups[host], key=lambda g: (depth_of(g), g))
        layers: list[Assignment] = []
        for layer in (1, 2):
            for g in ordered:
                layers.extend(a for a in by_target.get(("group", g), []) if a.layer == layer)
        for layer in (3, 4):
            layers.extend(a for a in by_target.get(("host", host), []) if a.layer == layer)
        merged[host] = {}
        origins[host] = {}
        for a in layers:
            merged[host][a.key] = a.value
            origins[host][a.key] = a.origin

    return Inventory(
        path=b.path,
        hosts=merged,
        groups=groups,
        origins=origins,
        host_origins=dict(b.host_origins),
        group_origins={name: g.origin for name, g in b.groups.items()},
        children={name: list(g.children) for name, g in b.groups.items()},
        assignments=list(b.assignments),
        files=list(b.files),
        warnings=list(b.warnings),
        hosts_file=b.hosts_file,
    )


# --------------------------------------------------------------------------- validate


def validate(inv: Inventory, extra_vars: Mapping[str, Any] | None = None) -> None:
    """Raise BadInput for the first problem of ``inv``: one line with file:line and a fix.

    ``extra_vars`` (from :func:`coerce_extra_vars`) override the inventory as ``-e`` does,
    so a conflict between the two is found too.
    """
    found = problems(inv, extra_vars)
    if not found:
        return
    first = found[0]
    if len(found) > 1:
        first.message = f"{first.message} ({len(found) - 1} more problem(s) after this one)"
    raise first


def problems(inv: Inventory, extra_vars: Mapping[str, Any] | None = None) -> list[BadInput]:
    """Every problem of ``inv`` in the order a user should fix them."""
    found: list[BadInput] = []
    hosts_file = inv.hosts_file or inv.path
    for host, origin in inv.host_origins.items():
        if not _valid_host_name(host):  # names are checked while reading; this is a backstop
            found.append(BadInput(f"{origin}: '{host}' is not a valid host name."))
    if GPU_GROUP not in inv.groups:
        groups = sorted(g for g in inv.groups if g not in ("all", "ungrouped"))
        close = difflib.get_close_matches(GPU_GROUP, groups, n=1, cutoff=0.6)
        where = str(inv.group_origins[close[0]]) if close else _show_path(hosts_file)
        found.append(
            BadInput(
                f"{where}: no '{GPU_GROUP}' group, so there is nothing to provision"
                + (f" (there is '{close[0]}': did you mean '{GPU_GROUP}'?)." if close else "."),
                fix=f"rename group '{close[0]}' to {GPU_GROUP}."
                if close
                else f"put your GPU hosts under all: children: {GPU_GROUP}: hosts:.",
            )
        )
    elif not inv.groups[GPU_GROUP]:
        found.append(
            BadInput(
                f"{inv.group_origins[GPU_GROUP]}: the '{GPU_GROUP}' group has no hosts.",
                fix=f"list at least one host under {GPU_GROUP}: hosts:.",
            )
        )

    def read_order(a: Assignment) -> tuple[int, int]:
        files = inv.files
        return (files.index(a.origin.file) if a.origin.file in files else len(files), a.origin.line)

    for a in sorted(inv.assignments, key=read_order):
        problem = _check_assignment(a.key, a.value, str(a.origin), raw=a.raw, text=a.text_values)
        if problem is not None:
            found.append(problem)
    extra = dict(extra_vars or {})
    extra_origins: Mapping[str, str] = getattr(extra_vars, "origins", {})
    seen: set[str] = set()
    for host in inv.hosts:
        values = inv.options_for(host)
        values.update({k: v for k, v in extra.items() if k in values})
        placed: dict[str, str] = {k: str(o) for k, o in inv.origins[host].items()}
        placed.update({k: extra_origins.get(k, "-e") for k in extra})
        for problem in _check_combination(values, placed):
            if str(problem) not in seen:
                seen.add(str(problem))
                found.append(problem)
    return found


def validate_vars(vars: Mapping[str, Any], origin: str) -> None:
    """Check extra vars (``-e``) on their own; raise BadInput for the first problem.

    Text values like "true" and "4" are accepted, as ``-e key=value`` can only give text.
    ``origin`` names where they came from (e.g. ``"-e"``); an :class:`ExtraVars` knows
    better per key and is used first.
    """
    origins: Mapping[str, str] = getattr(vars, "origins", {})
    raws: Mapping[str, str] = getattr(vars, "raws", {})
    for key, value in vars.items():
        where = origins.get(key, origin)
        problem = _check_assignment(key, value, where, raw=raws.get(key), text=True)
        if problem is not None:
            raise problem
    merged = defaults()
    merged.update({k: v for k, v in vars.items() if k in merged})
    placed = {k: origins.get(k, origin) for k in vars}
    for problem in _check_combination(merged, placed):
        raise problem


class ExtraVars(dict[str, Any]):
    """Parsed ``-e`` values, remembering where each one came from (for error messages)."""

    origins: dict[str, str]
    raws: dict[str, str]  # YAML scalars as written in an @file, to explain type guesses

    def __init__(self) -> None:
        super().__init__()
        self.origins = {}
        self.raws = {}


def coerce_extra_vars(pairs: list[str]) -> ExtraVars:
    """Parse ``-e`` arguments as Ansible does: ``k=v k2=v2``, ``@file.yml`` or JSON/YAML ``{...}``.

    ``k=v`` values are text; for known options they are turned into the option's type
    (``"true"`` -> True, ``"4"`` -> 4) so the roles get real booleans and numbers. Later
    arguments override earlier ones.
    """
    result = ExtraVars()
    for pair in pairs:
        text = pair.strip()
        if text.startswith("@"):
            file = Path(text[1:]).expanduser()
            if not text[1:]:
                raise BadInput("-e @: no file name after '@'.", fix="write -e @vars.yml.")
            if not file.is_file():
                raise BadInput(
                    f"-e {text}: file '{file}' not found.", fix="check the path after '@'."
                )
            data, vaulted = _read_yaml(file, what="extra vars file")
            if vaulted:
                raise BadInput(
                    f"-e {text}: the file is vault-encrypted; it cannot be read here.",
                    fix="pass secrets through vaulted group_vars instead.",
                )
            if data is None:
                continue
            if not isinstance(data, LineMap):
                raise BadInput(
                    f"{_at_start(file)}: extra vars must be a mapping of name: value, "
                    f"not {_kind(data)}.",
                    fix="write one 'variable: value' per line.",
                )
            for key, value in data.items():
                result[str(key)] = value
                result.origins[str(key)] = f"{_show_path(file)}:{data.lines.get(key, 1)}"
                if key in data.raws:
                    result.raws[str(key)] = data.raws[key]
                else:
                    result.raws.pop(str(key), None)
        elif text.startswith(("{", "[")):
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                try:
                    data = yaml.safe_load(text)
                except yaml.YAMLError as exc:
                    raise BadInput(
                        f"-e {text}: not valid JSON or YAML: {_one_line(str(exc))}.",
                        fix="write -e '{\"tfgpu_serial\": 2}'.",
                    ) from None
            if not isinstance(data, dict):
                raise BadInput(
                    f"-e {text}: extra vars must be a mapping, not {_kind(data)}.",
                    fix="write -e '{\"name\": value}'.",
                )
            for key, value in data.items():
                result[str(key)] = value
                result.origins[str(key)] = f"-e {text}"
                result.raws.pop(str(key), None)
        else:
            try:
                tokens = shlex.split(text)
            except ValueError as exc:
                raise BadInput(f"-e {text}: {exc}.", fix="close the quote.") from None
            for token in tokens:
                key, sep, value = token.partition("=")
                if not sep or not key:
                    raise BadInput(
                        f"-e {token}: expected key=value.",
                        fix="write -e tfgpu_serial=2, -e @vars.yml or -e '{\"key\": value}'.",
                    )
                result[key] = _coerce_text(key, value)
                result.origins[key] = f"-e {token}"
                result.raws.pop(key, None)
    return result


def _coerce_text(key: str, value: str) -> Any:
    opt = options().get(key)
    if opt is None:
        return value
    lowered = value.strip().lower()
    if opt.type == "bool" and lowered in _TRUE_WORDS | _FALSE_WORDS:
        return lowered in _TRUE_WORDS
    if opt.type in ("int", "int_or_percent") and re.fullmatch(r"-?[0-9]+", value.strip()):
        return int(value)
    return value


def _check_assignment(
    key: str, value: Any, where: str, *, raw: str | None, text: bool
) -> BadInput | None:
    names = list(options())
    if key.startswith(OPTION_PREFIX):
        opt = options().get(key)
        if opt is None:
            # Compare without the shared prefix, which would make every name look close.
            suffixes = {n[len(OPTION_PREFIX) :]: n for n in names}
            close = difflib.get_close_matches(key[len(OPTION_PREFIX) :], suffixes, n=1, cutoff=0.6)
            hint = f" Did you mean '{suffixes[close[0]]}'?" if close else ""
            return BadInput(
                f"{where}: unknown option '{key}'.{hint}",
                fix=f"use a name from {OPTIONS_FILE.name} (see inventory/lab/group_vars/all.yml)"
                + (" or fix the spelling." if hint else "; remove it."),
            )
        return _check_type(opt, value, where, raw=raw, text=text)
    if key.startswith("ansible_"):
        if key == "ansible_port":
            return _check_port(value, where)
        return None
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.85)
    if close:
        return BadInput(
            f"{where}: '{key}' looks like a misspelt option: did you mean '{close[0]}'?",
            fix=f"rename it to {close[0]} (options start with '{OPTION_PREFIX}').",
        )
    return None


def _check_port(value: Any, where: str) -> BadInput | None:
    if _is_template(value) or isinstance(value, VaultValue):
        return None
    port: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        port = value
    elif isinstance(value, str) and value.strip().isdigit():
        port = int(value)
    if port is None or not 0 < port < 65536:
        return BadInput(
            f"{where}: ansible_port is {_describe(value)}; it must be a port number 1-65535.",
            fix="write e.g. ansible_port: 22.",
        )
    return None


def _check_type(
    opt: Option, value: Any, where: str, *, raw: str | None, text: bool
) -> BadInput | None:
    if _is_template(value) or isinstance(value, VaultValue):
        return None  # known only when Ansible templates it on the host
    key = opt.name
    if value is None:
        if opt.default is None:
            return None
        return BadInput(
            f"{where}: {key} is empty (YAML reads it as null).",
            fix=f"set a value, or delete the line to use the default {_yaml_literal(opt.default)}.",
        )
    if opt.type == "bool":
        if isinstance(value, bool):
            return None
        if text and isinstance(value, str) and value.strip().lower() in _TRUE_WORDS | _FALSE_WORDS:
            return None
        if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS | _FALSE_WORDS:
            word = value.strip().lower() in _TRUE_WORDS
            return BadInput(
                f"{where}: {key} is the text {value!r}, not a boolean.",
                fix=f"write it without quotes: {key}: {str(word).lower()}.",
            )
        return BadInput(
            f"{where}: {key} must be true or false, not {_describe(value)}.",
            fix=f"write {key}: true or {key}: false.",
        )
    if opt.type in ("int", "int_or_percent"):
        return _check_int(opt, value, where, text=text)
    if opt.type == "list":
        if not isinstance(value, list):
            shown = value if isinstance(value, str) else (opt.example or "item")
            return BadInput(
                f"{where}: {key} must be a list, not {_describe(value)}.",
                fix=f"write {key}: [{shown}]"
                + (" (on the command line: -e '{\"" + key + "\": [...]}')" if text else "")
                + ".",
            )
        for item in value:
            if opt.items == "str" and not isinstance(item, str):
                return BadInput(
                    f"{where}: {key} must hold text items; {_describe(item)} is not text.",
                    fix=f'quote each item: {key}: ["{item}"].',
                )
        return None
    if opt.type == "dict":
        if isinstance(value, Mapping):
            return None
        return BadInput(
            f"{where}: {key} must be a mapping, not {_describe(value)}.",
            fix=f"write {key}: followed by indented 'name: value' lines.",
        )
    return _check_str(opt, value, where, raw=raw)


def _check_str(opt: Option, value: Any, where: str, *, raw: str | None) -> BadInput | None:
    key = opt.name
    if isinstance(value, bool):
        written = raw if raw is not None else str(value).lower()
        allowed = f"; allowed values: {', '.join(opt.choices)}" if opt.choices else ""
        return BadInput(
            f"{where}: {key}: YAML reads {written} as {str(value).lower()}, not the text "
            f"'{written}'{allowed}.",
            fix=f'quote it: {key}: "{written}".',
        )
    if isinstance(value, float):
        written = raw if raw is not None else repr(value)
        as_number = repr(value)
        if written != as_number:
            problem = f"{written} is read by YAML as the number {as_number}, losing '{written}'"
            fix = f'quote versions: {key}: "{written}".'
        else:
            problem = f"{written} is read by YAML as the number {as_number}, not text"
            head, _, tail = written.partition(".")
            guess = f"{head}.{tail}0" if len(tail) == 1 else None
            if guess:
                problem += f" (did you mean '{guess}'?)"
            fix = (
                f'quote versions: {key}: "{guess or written}"'
                + (f' (or "{written}")' if guess else "")
                + "."
            )
        return BadInput(f"{where}: {key}: {problem}.", fix=fix)
    if isinstance(value, int):
        value = str(value)  # e.g. tfgpu_driver_branch: 535 -- no information is lost
    if not isinstance(value, str):
        example = f'"{opt.example}"' if opt.example is not None else "..."
        return BadInput(
            f"{where}: {key} must be text, not {_describe(value)}.",
            fix=f"write {key}: {example}.",
        )
    if opt.choices and value not in opt.choices:
        hint = _did_you_mean(value, list(opt.choices))
        return BadInput(
            f"{where}: {key}: {value!r} is not an allowed value.{hint}",
            fix=f"use one of: {', '.join(opt.choices)}.",
        )
    if opt.pattern and not re.fullmatch(opt.pattern, value):
        return BadInput(
            f"{where}: {key}: {value!r} is not a valid value.",
            fix=f'write e.g. {key}: "{opt.example}".',
        )
    return None


def _check_int(opt: Option, value: Any, where: str, *, text: bool) -> BadInput | None:
    key = opt.name
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and text and re.fullmatch(r"-?[0-9]+", value.strip()):
        number = int(value)
    elif opt.type == "int_or_percent" and isinstance(value, str):
        percent = _PERCENT.match(value.strip())
        if percent is None or not 0 < int(percent["n"]) <= 100:
            return BadInput(
                f"{where}: {key}: {value!r} is neither a number nor a percentage 1-100%.",
                fix=f'write e.g. {key}: 2 or {key}: "{opt.example}".',
            )
        return None
    if number is None:
        wanted = (
            "a whole number or a percentage" if opt.type == "int_or_percent" else "a whole number"
        )
        example = f'"{opt.example}"' if isinstance(opt.example, str) else opt.example
        return BadInput(
            f"{where}: {key} must be {wanted}, not {_describe(value)}.",
            fix=f"write e.g. {key}: {example}.",
        )
    low = opt.min if opt.min is not None else None
    high = opt.max if opt.max is not None else None
    if (low is not None and number < low) or (high is not None and number > high):
        bounds = f"{low}-{high}" if low is not None and high is not None else f">= {low}"
        return BadInput(
            f"{where}: {key}: {number} is out of range ({bounds}).",
            fix=f"use a value in {bounds}.",
        )
    return None


def _check_combination(values: Mapping[str, Any], placed: Mapping[str, str]) -> Iterator[BadInput]:
    """Options that are each valid but do not work together.

    ``values`` holds every option (defaults filled in); ``placed`` says where each option
    that the user set was written. A conflict always involves at least one set option.
    """

    def where(*keys: str) -> str:
        spots = [placed[k] for k in keys if k in placed]
        if not spots:
            return "options"
        others = [
            f"{k} at {placed[k]}" for k in keys[:-1] if k in placed and placed[k] != spots[-1]
        ]
        return spots[-1] + (f" (with {', '.join(others)})" if others else "")

    def plain(*keys: str) -> bool:
        # Only values that passed their own checks; a wrong one is reported on its own.
        return all(values.get(k) in options()[k].choices for k in keys)

    cuda, cudnn = values.get("tfgpu_cuda_source"), values.get("tfgpu_cudnn_source")
    in_env = ("pip", "conda")
    mixed = cuda != cudnn and (cudnn in in_env or cuda in in_env)
    if plain("tfgpu_cuda_source", "tfgpu_cudnn_source") and mixed:
        layer = cudnn if cudnn in in_env else cuda
        yield BadInput(
            f"{where('tfgpu_cuda_source', 'tfgpu_cudnn_source')}: tfgpu_cudnn_source is "
            f"{cudnn} but tfgpu_cuda_source is {cuda}; CUDA and cuDNN from {layer} come "
            "as one set inside the env and cannot be mixed with another source.",
            fix=f"set both tfgpu_cuda_source and tfgpu_cudnn_source to {layer}, or both "
            "to system sources (e.g. nvidia_repo).",
        )
    if plain("tfgpu_env_manager") and values.get("tfgpu_env_manager") == "venv":
        for key in ("tfgpu_cuda_source", "tfgpu_cudnn_source"):
            if values.get(key) == "conda":
                yield BadInput(
                    f"{where('tfgpu_env_manager', key)}: {key} is conda but "
                    "tfgpu_env_manager is venv; a venv cannot hold conda packages.",
                    fix=f"set tfgpu_env_manager: conda, or {key}: pip.",
                )
                break
    branch = values.get("tfgpu_driver_branch")
    if (
        values.get("tfgpu_driver_source") == "none"
        and branch is not None
        and not _is_template(branch)
    ):
        yield BadInput(
            f"{where('tfgpu_driver_source', 'tfgpu_driver_branch')}: tfgpu_driver_branch is "
            f"{branch} but tfgpu_driver_source is none, so no driver is installed.",
            fix="remove tfgpu_driver_branch, or set tfgpu_driver_source: distro or nvidia_repo.",
        )
    simulate = values.get("tfgpu_simulate_gpus")
    if _truthy(values.get("tfgpu_require_gpu")) and _as_int(simulate) > 0:
        yield BadInput(
            f"{where('tfgpu_require_gpu', 'tfgpu_simulate_gpus')}: tfgpu_require_gpu is true "
            f"and tfgpu_simulate_gpus is {simulate}; a simulated run never counts as a GPU pass.",
            fix="set tfgpu_simulate_gpus: 0 on real GPU hosts, or tfgpu_require_gpu: false.",
        )


# --------------------------------------------------------------------------- helpers


def resolve(name_or_path: str, *, search_root: Path | None = None) -> Inventory:
    """locate + load + validate: the inventory the CLI runs against, or BadInput."""
    inv = load(locate(name_or_path, search_root=search_root))
    validate(inv)
    return inv


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.strip().lower() in _TRUE_WORDS


def _as_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = value.strip() if isinstance(value, str) else ""
    return int(text) if text.isdigit() else 0


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and any(m in value for m in _TEMPLATE_MARKERS)


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return f"a list ({_short(value)})"
    if isinstance(value, Mapping):
        return "a mapping"
    return _kind(value)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _yaml_literal(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (str, list)) else str(value).lower()


def _at_start(path: Path) -> str:
    return f"{_show_path(path)}:{_first_content_line(path)}"


def _first_content_line(path: Path) -> int:
    """The first line that is not blank, a comment or ``---``: where a reader looks first."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return 1
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and stripped != "---":
            return number
    return 1


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _show_path(path: Path) -> str:
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
