"""The controller's wheelhouse: download a Python env's wheels once per fleet, serve them to hosts.

A fleet of N hosts installing ``tensorflow[and-cuda]`` from an index downloads ~3 GB N times.
Instead the controller runs ``pip download`` once for the hosts' platform and Python, keeps
the result under a key of what was asked for (requirements, Python, platforms, index), records
each wheel's sha256 in a manifest, and serves the directory over HTTP for the duration of a
run; the ``tf_env`` role then installs with ``--no-index --find-links <url>``.

Reuse is checked, not trusted: every wheel is hashed against the manifest before a cached
wheelhouse is returned or served, so a truncated or tampered file is never handed to a host.
Downloads go to a ``.partial`` directory renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from tfgpu_provision.errors import TfgpuError

# Bump when the layout or the manifest changes meaning: it invalidates every cached key.
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_HASH_CHUNK = 1 << 20

Progress = Callable[[str], None]


class WheelhouseError(TfgpuError):
    """A wheelhouse could not be built, or a cached one failed its hash check."""


def default_cache_root() -> Path:
    return Path.home() / ".cache" / "tfgpu-provision" / "wheelhouse"


def manylinux_platforms(glibc: str = "2.36", arch: str = "x86_64") -> tuple[str, ...]:
    """Every platform tag a host with this glibc accepts, newest first.

    ``pip download --platform`` takes tags literally (it widens only the legacy
    manylinux2014/2010 aliases), so a host's whole range must be listed: glibc 2.36
    (Debian 12) accepts ``manylinux_2_36`` down to ``manylinux_2_17`` (= manylinux2014).
    """
    major, _, minor = glibc.partition(".")
    if major != "2" or not minor.isdigit() or int(minor) < 17:
        raise WheelhouseError(
            f"unsupported glibc version {glibc!r} for a manylinux wheelhouse",
            fix="give the hosts' glibc as 2.N with N >= 17 (ldd --version prints it).",
        )
    tags = [f"manylinux_2_{n}_{arch}" for n in range(int(minor), 16, -1)]
    tags += [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    return tuple(tags)


# Debian 12's glibc; Ubuntu 22.04 (2.35) and RHEL 9 (2.34) hosts need their own list.
DEFAULT_PLATFORMS = manylinux_platforms("2.36", "x86_64")


def _as_tuple(value: str | Sequence[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def wheelhouse_key(
    requirements: Sequence[str],
    python_version: str,
    platforms: Sequence[str],
    index_url: str | None = None,
) -> str:
    """sha256 of everything that decides which wheels a download yields."""
    spec = {
        "format": FORMAT_VERSION,
        "requirements": sorted(requirements),
        "python": python_version,
        "platforms": list(platforms),
        "index_url": index_url or "",
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(functools.partial(handle.read, _HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(path: Path) -> dict[str, Any]:
    manifest_file = path / MANIFEST
    try:
        data = json.loads(manifest_file.read_text())
    except FileNotFoundError:
        raise WheelhouseError(f"{path} is not a wheelhouse: it has no {MANIFEST}") from None
    except (OSError, ValueError) as exc:
        raise WheelhouseError(f"unreadable wheelhouse manifest {manifest_file}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("wheels"), dict):
        raise WheelhouseError(f"wheelhouse manifest {manifest_file} has no 'wheels' table")
    return data


def problems(path: Path) -> list[str]:
    """What is wrong with a wheelhouse, one line per file; empty when every hash matches."""
    try:
        wheels: dict[str, Any] = read_manifest(path)["wheels"]
    except WheelhouseError as exc:
        return [exc.message]
    found: list[str] = []
    for name, entry in sorted(wheels.items()):
        wheel = path / name
        if not wheel.is_file():
            found.append(f"{wheel}: listed in the manifest but missing")
        elif (actual := file_sha256(wheel)) != entry.get("sha256"):
            found.append(
                f"{wheel}: sha256 {actual} does not match the manifest's {entry.get('sha256')}"
            )
    for extra in sorted(p.name for p in path.iterdir() if p.name != MANIFEST):
        if extra not in wheels:
            found.append(f"{path / extra}: not in the manifest")
    return found


def _stat_stamp(path: Path) -> dict[str, list[int]] | None:
    """Size, inode, mtime and ctime of the manifest and of every file in the wheelhouse.

    ctime cannot be set from user space: any write or ``touch`` of a file changes it. Like
    git's index, an unchanged stamp means no file was changed since it was taken.
    """
    try:
        return {
            entry.name: [st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]
            for entry in sorted(path.iterdir(), key=lambda e: e.name)
            for st in [entry.stat()]
        }
    except OSError:
        return None


def _stamp_file(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _record_verified(path: Path) -> None:
    """Remember the files' stat data right after every hash matched."""
    stamp = _stat_stamp(path)
    if stamp is not None:
        _stamp_file(path).write_text(json.dumps(stamp, sort_keys=True) + "\n")


def unchanged_since_verified(path: Path) -> bool:
    """True when no file of the wheelhouse changed since its hashes last all matched."""
    try:
        recorded = json.loads(_stamp_file(path).read_text())
    except (OSError, ValueError):
        return False
    current = _stat_stamp(path)
    return current is not None and recorded == current


def verify(path: Path) -> dict[str, Any]:
    """Check every wheel against the manifest; return the manifest or raise naming the files."""
    found = problems(path)
    if found:
        raise WheelhouseError(
            "wheelhouse failed its hash check:\n  " + "\n  ".join(found),
            fix=f"delete {path} and build it again (the next run re-downloads it).",
        )
    return read_manifest(path)


def _download(
    requirements: Sequence[str],
    python_version: str,
    platforms: Sequence[str],
    index_url: str | None,
    dest: Path,
    pip_args: Sequence[str],
) -> None:
    cmd = [
        sys.executable, "-m", "pip", "download",
        "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
        "--only-binary=:all:",
        "--python-version", python_version,
        "--dest", str(dest),
    ]  # fmt: skip
    for platform in platforms:
        cmd += ["--platform", platform]
    if index_url:
        cmd += ["--index-url", index_url]
    cmd += [*pip_args, *requirements]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        # The index URL may carry credentials; never echo it back.
        if index_url:
            tail = tail.replace(index_url, "<index-url>")
        raise WheelhouseError(
            f"pip download of {' '.join(requirements)} for Python {python_version} failed "
            f"(exit {proc.returncode}):\n{tail}",
            fix="check the requirement, the Python version and that the index is reachable.",
        )


def build(
    requirement: str | Sequence[str],
    python_version: str,
    platform: str | Sequence[str] = DEFAULT_PLATFORMS,
    cache_root: Path | None = None,
    *,
    index_url: str | None = None,
    pip_args: Sequence[str] = (),
    on_corrupt: Literal["rebuild", "error"] = "rebuild",
    progress: Progress | None = None,
) -> Path:
    """The wheelhouse directory for these requirements, downloading only when not cached.

    ``python_version`` is the hosts' env Python as X.Y; ``platform`` one tag or the list of
    tags the hosts accept. A cached wheelhouse is verified first: hashed again unless no file
    changed since its hashes last matched (:func:`unchanged_since_verified`); one that fails (a
    wheel changed, missing or added) is downloaded again, or with ``on_corrupt="error"`` raises
    :class:`WheelhouseError` naming each bad file.
    """
    say = progress or (lambda _message: None)
    requirements = _as_tuple(requirement)
    platforms = _as_tuple(platform)
    if not requirements:
        raise WheelhouseError("a wheelhouse needs at least one requirement")
    root = cache_root if cache_root is not None else default_cache_root()
    key = wheelhouse_key(requirements, python_version, platforms, index_url)
    final = root / key
    if final.exists():
        if unchanged_since_verified(final):
            say(f"wheelhouse {final} reused ({key[:12]}): no file changed since its hashes matched")
            return final
        say(f"checking the cached wheelhouse {key[:12]} against its manifest's sha256 hashes")
        found = problems(final)
        if not found:
            _record_verified(final)
            say(f"wheelhouse {final} reused ({key[:12]})")
            return final
        _stamp_file(final).unlink(missing_ok=True)
        if on_corrupt == "error":
            verify(final)  # raises with every bad file named
        say("wheelhouse failed its hash check, downloading again:\n  " + "\n  ".join(found))
        shutil.rmtree(final)

    partial = root / f"{key}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    say(f"downloading {' '.join(requirements)} for Python {python_version} into {final}")
    try:
        _download(requirements, python_version, platforms, index_url, partial, pip_args)
        wheels = {
            p.name: {"sha256": file_sha256(p), "size": p.stat().st_size}
            for p in sorted(partial.iterdir())
            if p.is_file()
        }
        manifest = {
            "format": FORMAT_VERSION,
            "key": key,
            "requirements": list(requirements),
            "python_version": python_version,
            "platforms": list(platforms),
            # The URL may hold credentials: record only whether a custom index was used.
            "custom_index": bool(index_url),
            "wheels": wheels,
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        partial.rename(final)
        _record_verified(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] | None = None

    def log_message(self, format: str, *args: Any) -> None:
        if self.requests is not None:
            self.requests.append(self.path)


@contextlib.contextmanager
def serve(
    path: Path,
    bind: str = "127.0.0.1",
    port: int = 0,
    *,
    url_host: str | None = None,
    requests: list[str] | None = None,
    verified: bool = False,
) -> Iterator[str]:
    """Serve a verified wheelhouse over HTTP while the block runs; yields its URL.

    ``bind`` must be an address the hosts reach (sandbox hosts: 127.0.0.1); ``port`` 0 picks
    a free one. ``url_host`` overrides the host name put in the URL (e.g. the controller's
    DNS name when binding 0.0.0.0). Each request path is appended to ``requests`` when given.
    Every wheel is checked against the manifest first, unless ``verified`` says the caller
    has just done so (:func:`build` checks before it returns): hashing a TensorFlow wheelhouse
    (3.4 GB) twice in a row costs minutes when it is not in the page cache.
    """
    if not verified:
        verify(path)

    class Handler(_QuietHandler):
        pass

    Handler.requests = requests
    server = http.server.ThreadingHTTPServer(
        (bind, port), functools.partial(Handler, directory=str(path))
    )
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="wheelhouse-http", daemon=True)
    thread.start()
    host = url_host or bind
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    try:
        yield f"http://{host}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
