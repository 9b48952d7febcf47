"""The base root filesystem every sandbox node overlays: built once with debootstrap, cached.

The cache key is a hash of the recipe (suite, mirrors, packages, this machine's extra CA
certificates, apt proxy, the files we add), so a changed recipe builds a new tree and an
unchanged one is reused. Builds happen in a temporary directory renamed into place, so a
crashed build never leaves a half-built tree that looks finished.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tfgpu_provision.errors import BadInput, TfgpuError

# Bump when the files written into the tree below change meaning: it invalidates the cache.
RECIPE_VERSION = 1

SUITES = ("bookworm", "trixie")
COMPONENTS = "main contrib non-free non-free-firmware"
# python3-apt: Ansible's apt module would otherwise install it on every node at first use.
# procps, iproute2, kmod, pciutils: what facts gathering and GPU preflight probes call.
PACKAGES = (
    "python3",
    "python3-apt",
    "openssh-server",
    "sudo",
    "ca-certificates",
    "procps",
    "iproute2",
    "kmod",
    "pciutils",
)
EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")
REBOOT_COMMAND = "/usr/local/sbin/tfgpu-sandbox-reboot"
BOOT_ID_FILE = "/run/boot-id"
MARKER = ".tfgpu-rootfs.json"

# A plain background `kill` would die with the SSH session that started it; setsid detaches
# it. sshd is PID 1 and exits on TERM, which ends the namespace; the supervisor boots it again.
REBOOT_SCRIPT = """#!/bin/sh
# Reboot this tfgpu-provision sandbox node: its supervisor starts a fresh namespace
# (new /run, new /run/boot-id, sshd back); the overlay's files survive.
setsid sh -c 'sleep 1; kill -TERM 1' </dev/null >/dev/null 2>&1 &
echo "rebooting $(hostname) in 1 s"
"""

# There is no init system in a node: daemons a package would start stay stopped, as in any
# container, instead of failing the package's postinst.
POLICY_RC = """#!/bin/sh
exit 101
"""

SSHD_CONFIG = """# tfgpu-provision sandbox node: key-only root login over 127.0.0.1.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
# PAM's session modules expect a booted system (logind, loginuid); nothing here needs them.
UsePAM no
UseDNS no
PrintMotd no
"""


def cache_root() -> Path:
    return Path.home() / ".cache" / "tfgpu-provision"


@dataclass(frozen=True)
class Recipe:
    suite: str
    mirror: str
    security_mirror: str | None
    proxy: str | None
    packages: tuple[str, ...] = PACKAGES
    # (file name, sha256) of this machine's extra CA certificates.
    ca_certs: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def digest(self) -> str:
        payload = json.dumps(
            {
                "version": RECIPE_VERSION,
                "recipe": asdict(self),
                "files": [REBOOT_SCRIPT, POLICY_RC, SSHD_CONFIG, COMPONENTS],
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    @property
    def name(self) -> str:
        return f"{self.suite}-{self.digest()}"


def _sources_entries(apt_dir: Path) -> Iterator[tuple[str, list[str]]]:
    """Yield (uri, suites) for every enabled `deb` source of this machine."""
    one_line = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in one_line:
        if not path.is_file():
            continue
        for raw in path.read_text(errors="replace").splitlines():
            line = raw.split("#", 1)[0].strip()
            line = re.sub(r"\[[^\]]*\]", " ", line)
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb":
                yield parts[1], [parts[2]]
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text(errors="replace")):
            fields: dict[str, str] = {}
            for raw in stanza.splitlines():
                if raw.startswith("#") or ":" not in raw or raw[:1].isspace():
                    continue
                key, value = raw.split(":", 1)
                fields[key.strip().lower()] = value.strip()
            if "deb" not in fields.get("types", "").split():
                continue
            if fields.get("enabled", "yes").lower() == "no":
                continue
            for uri in fields.get("uris", "").split():
                yield uri, fields.get("suites", "").split()


def host_mirrors(apt_dir: Path = Path("/etc/apt")) -> tuple[str | None, str | None]:
    """The Debian archive and security mirrors this machine's apt uses (either may be None)."""
    archive: str | None = None
    security: str | None = None
    for uri, suites in _sources_entries(apt_dir):
        if any(s.endswith("-security") for s in suites):
            security = security or uri
        elif suites:
            archive = archive or uri
    return archive, security


def host_proxy() -> str | None:
    """The HTTP proxy this machine uses for apt, if any: the environment, then apt's config."""
    for var in ("http_proxy", "HTTP_PROXY"):
        if os.environ.get(var):
            return os.environ[var]
    if shutil.which("apt-config") is None:
        return None
    try:
        out = subprocess.run(
            ["apt-config", "dump", "Acquire::http::Proxy"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'^Acquire::http::Proxy "([^"]+)";', out, re.MULTILINE)
    if match and match.group(1).upper() not in ("DIRECT", "FALSE"):
        return match.group(1)
    return None


def host_ca_certs() -> list[Path]:
    if not EXTRA_CA_DIR.is_dir():
        return []
    return sorted(p for p in EXTRA_CA_DIR.rglob("*.crt") if p.is_file())


def make_recipe(suite: str, mirror: str | None) -> Recipe:
    if suite not in SUITES:
        raise BadInput(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")
    archive, security = host_mirrors()
    if mirror:
        archive = mirror
    if not archive:
        raise BadInput(
            "no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d/",
            fix="pass one with --mirror URL.",
        )
    certs = tuple(
        (str(p.relative_to(EXTRA_CA_DIR)), hashlib.sha256(p.read_bytes()).hexdigest())
        for p in host_ca_certs()
    )
    return Recipe(
        suite=suite,
        mirror=archive.rstrip("/"),
        security_mirror=security.rstrip("/") if security else None,
        proxy=host_proxy(),
        ca_certs=certs,
    )


def _debian_sources(recipe: Recipe) -> str:
    text = (
        "# Written by tfgpu-provision sandbox.\n"
        "Types: deb\n"
        f"URIs: {recipe.mirror}\n"
        f"Suites: {recipe.suite} {recipe.suite}-updates\n"
        f"Components: {COMPONENTS}\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    if recipe.security_mirror:
        text += (
            "\nTypes: deb\n"
            f"URIs: {recipe.security_mirror}\n"
            f"Suites: {recipe.suite}-security\n"
            f"Components: {COMPONENTS}\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        )
    return text


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


# debootstrap's phase lines worth relaying as progress (it prints hundreds of lines in all).
_PHASES = re.compile(
    r"^I: (Retrieving Packages|Resolving dependencies of required|Installing core packages"
    r"|Unpacking the base system|Configuring the base system|Base system installed)"
)


def _run_logged(
    cmd: list[str], log: Path, what: str, progress: Callable[[str], None] | None = None
) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            if progress and _PHASES.match(line):
                progress(f"  {what}: {line[3:].strip().rstrip('.')}")
        returncode = proc.wait()
    if returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise TfgpuError(
            f"{what} failed (exit {returncode}); log: {log}\n" + "\n".join(tail),
            fix="check network access to the mirror, or pass another one with --mirror URL.",
        )


def _configure(tree: Path, recipe: Recipe, log: Path) -> None:
    (tree / "etc/apt/sources.list").unlink(missing_ok=True)
    _write(tree / "etc/apt/sources.list.d/debian.sources", _debian_sources(recipe))
    if recipe.proxy:
        _write(
            tree / "etc/apt/apt.conf.d/90tfgpu-sandbox-proxy",
            f'Acquire::http::Proxy "{recipe.proxy}";\n',
        )
    _write(tree / "usr/sbin/policy-rc.d", POLICY_RC, 0o755)
    _write(tree / REBOOT_COMMAND.lstrip("/"), REBOOT_SCRIPT, 0o755)
    _write(tree / "etc/ssh/sshd_config.d/tfgpu-sandbox.conf", SSHD_CONFIG)
    # Each node gets its own host key at `up`; the tree's would be shared by all of them.
    for key in (tree / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    for src in host_ca_certs():
        dest = tree / "usr/local/share/ca-certificates" / src.relative_to(EXTRA_CA_DIR)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    # /proc in a private mount namespace: apt wants it, and it vanishes with the namespace.
    script = (
        'set -e; mount -t proc proc "$1/proc"; '
        'chroot "$1" update-ca-certificates; '
        'chroot "$1" apt-get update -q; '
        'chroot "$1" apt-get clean'
    )
    _run_logged(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--fork",
            "sh",
            "-c",
            script,
            "sh",
            str(tree),
        ],
        log,
        "configuring the root filesystem",
    )


@contextlib.contextmanager
def _build_lock(base: Path) -> Iterator[None]:
    base.mkdir(parents=True, exist_ok=True)
    with (base / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_rootfs(recipe: Recipe, progress: Callable[[str], None]) -> Path:
    """Return the cached tree for ``recipe``, building it first if it is not there."""
    base = cache_root() / "rootfs"
    final = base / recipe.name
    if (final / MARKER).is_file():
        return final
    with _build_lock(base):
        if (final / MARKER).is_file():
            return final
        for stale in base.glob(f".{recipe.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = base / f".{recipe.name}.tmp-{os.getpid()}"
        log = base / f"{recipe.name}.log"
        log.write_text("")
        started = time.monotonic()
        progress(
            f"building the {recipe.suite} root filesystem with debootstrap "
            f"(once per recipe, about 40-90 s); log: {log}"
        )
        try:
            _run_logged(
                [
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(recipe.packages)}",
                    "--components=main",
                    recipe.suite,
                    str(tmp),
                    recipe.mirror,
                ],
                log,
                "debootstrap",
                progress,
            )
            progress(f"debootstrap done in {time.monotonic() - started:.0f} s; configuring")
            _configure(tmp, recipe, log)
            meta = {"recipe": asdict(recipe), "built_seconds": round(time.monotonic() - started)}
            (tmp / MARKER).write_text(json.dumps(meta, indent=2) + "\n")
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        progress(f"root filesystem ready in {time.monotonic() - started:.0f} s: {final}")
    return final
