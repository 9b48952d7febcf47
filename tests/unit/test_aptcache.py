"""tfgpu_provision.aptcache: the controller's apt-cacher-ng for a run.

Configuration, log parsing and the run wiring are pure; the lifecycle tests start the real
apt-cacher-ng (skipped where it is not installed) on 127.0.0.1 without touching the network.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tfgpu_provision import aptcache
from tfgpu_provision.errors import BadInput

needs_acng = pytest.mark.skipif(
    shutil.which(aptcache.EXECUTABLE) is None, reason="apt-cacher-ng is not installed"
)


def _listening(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=1):
            return True
    except OSError:
        return False


def test_config_keeps_the_instance_in_the_foreground_on_our_port_and_dirs(tmp_path: Path) -> None:
    text = aptcache.render_config(
        bind="127.0.0.1",
        port=23142,
        cache_dir=tmp_path / "cache",
        log_dir=tmp_path / "logs",
        run_dir=tmp_path / "run",
    )
    lines = set(text.splitlines())
    assert "Port: 23142" in lines
    assert "BindAddress: 127.0.0.1" in lines
    assert "ForeGround: 1" in lines
    assert f"CacheDir: {tmp_path / 'cache'}" in lines
    assert f"LogDir: {tmp_path / 'logs'}" in lines
    assert f"PidFile: {tmp_path / 'run' / 'pid'}" in lines
    assert "AllowUserPorts: 80 443" in lines
    assert any(line.startswith("PassThroughPattern:") and ":443$" in line for line in lines)
    assert not any(line.startswith("Proxy:") for line in lines)


def test_config_names_the_upstream_proxy_when_given(tmp_path: Path) -> None:
    text = aptcache.render_config(
        bind="127.0.0.1",
        port=3142,
        cache_dir=tmp_path,
        log_dir=tmp_path,
        run_dir=tmp_path,
        proxy="http://proxy.internal:3128",
    )
    assert "Proxy: http://proxy.internal:3128" in text.splitlines()


def test_transfer_log_separates_upstream_fetches_from_served_bytes(tmp_path: Path) -> None:
    # Lines as apt-cacher-ng 3.7 writes them (captured from a run on Debian 12).
    (tmp_path / aptcache.LOG_FILE).write_text(
        "1796318860|I|53344|127.0.0.1|deb.example/debian/pool/main/h/hello/hello_2.10-3_amd64.deb\n"
        "1796318860|O|53313|127.0.0.1|deb.example/debian/pool/main/h/hello/hello_2.10-3_amd64.deb\n"
        "1796318861|O|53313|127.0.0.2|deb.example/debian/pool/main/h/hello/hello_2.10-3_amd64.deb\n"
        "1796318857|E|640|127.0.0.1|deb.example/debian/x.deb [HTTP error, code: 503]\n"
        "not a log line\n"
    )
    transfers = aptcache.read_transfers(tmp_path)
    assert [t.kind for t in transfers] == ["I", "O", "O"]
    assert transfers[2].client == "127.0.0.2"
    assert aptcache.summary(tmp_path) == {
        "upstream_requests": 1,
        "upstream_bytes": 53344,
        "served_requests": 2,
        "served_bytes": 106626,
    }


def test_missing_log_means_no_transfers(tmp_path: Path) -> None:
    assert aptcache.read_transfers(tmp_path / "nowhere") == []


def test_missing_apt_cacher_ng_is_a_clear_error_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(aptcache.shutil, "which", lambda _name: None)
    with pytest.raises(aptcache.AptCacheError) as caught, aptcache.controller_cache(tmp_path):
        pass
    assert "apt-cacher-ng is not installed" in caught.value.message
    assert caught.value.fix is not None and "make setup" in caught.value.fix


def test_ports_apt_cacher_ng_cannot_bind_are_refused(tmp_path: Path) -> None:
    if shutil.which(aptcache.EXECUTABLE) is None:
        pytest.skip("apt-cacher-ng is not installed")
    too_high = aptcache.controller_cache(cache_dir=tmp_path, port=40000, proxy=None)
    with pytest.raises(BadInput, match="32768"), too_high:
        pass
    upstream_too_high = aptcache.controller_cache(
        cache_dir=tmp_path, proxy="http://127.0.0.1:40000"
    )
    with pytest.raises(aptcache.AptCacheError, match="port 40000"), upstream_too_high:
        pass


def test_candidate_ports_stay_below_the_limit_and_start_with_the_remembered_one() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        ports = []
        for port in aptcache._candidate_ports("127.0.0.1", 23456):
            ports.append(port)
            if len(ports) == 20:
                break
    assert all(0 < p <= aptcache.MAX_PORT for p in ports)
    assert len(set(ports)) == len(ports)
    if aptcache._bindable("127.0.0.1", 23456):
        assert ports[0] == 23456


@contextlib.contextmanager
def _fake_cache(*args: object, **kwargs: object) -> Iterator[str]:
    _fake_cache.calls.append((args, kwargs))  # type: ignore[attr-defined]
    yield "http://127.0.0.1:3142"


def test_for_run_starts_nothing_without_a_host_that_wants_the_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_cache.calls = []  # type: ignore[attr-defined]
    monkeypatch.setattr(aptcache, "controller_cache", _fake_cache)
    options: dict[str, dict[str, object]] = {
        "a": {"tfgpu_apt_cache": "none", "tfgpu_apt_proxy": None},
        # An existing proxy wins over the controller cache for that host.
        "b": {"tfgpu_apt_cache": "controller", "tfgpu_apt_proxy": "http://cache.internal:3142"},
    }
    with aptcache.for_run(options) as extravars:
        assert extravars == {}
    assert _fake_cache.calls == []  # type: ignore[attr-defined]


def test_for_run_passes_the_cache_url_when_a_host_wants_it(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_cache.calls = []  # type: ignore[attr-defined]
    monkeypatch.setattr(aptcache, "controller_cache", _fake_cache)
    options: dict[str, dict[str, object]] = {
        "a": {"tfgpu_apt_cache": "none"},
        "b": {"tfgpu_apt_cache": "controller", "tfgpu_apt_proxy": None},
    }
    with aptcache.for_run(options, "10.0.0.1") as extravars:
        assert extravars == {"tfgpu_apt_cache_url": "http://127.0.0.1:3142"}
    assert len(_fake_cache.calls) == 1  # type: ignore[attr-defined]
    assert _fake_cache.calls[0][0][0] == "10.0.0.1"  # type: ignore[attr-defined]


@needs_acng
def test_cache_runs_for_the_block_only_and_keeps_its_port(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    with aptcache.controller_cache(cache_dir=cache_dir, proxy=None) as url:
        parts = urllib.parse.urlsplit(url)
        assert parts.hostname == "127.0.0.1"
        assert parts.port is not None and parts.port <= aptcache.MAX_PORT
        assert _listening(url)
    assert not _listening(url), "apt-cacher-ng still answers after the block"
    assert cache_dir.is_dir()
    assert (tmp_path / "cache.logs").is_dir()
    # The next run gets the same URL, so the file written on the hosts does not change.
    with aptcache.controller_cache(cache_dir=cache_dir, proxy=None) as again:
        assert again == url


@needs_acng
def test_cache_stops_when_the_block_raises(tmp_path: Path) -> None:
    cache = aptcache.controller_cache(cache_dir=tmp_path / "cache", proxy=None)
    with pytest.raises(RuntimeError), cache as url:
        raise RuntimeError("run failed")
    assert url and not _listening(url)


@needs_acng
def test_two_runs_cannot_share_one_cache_dir(tmp_path: Path) -> None:
    second = aptcache.controller_cache(cache_dir=tmp_path / "cache", proxy=None)
    with (
        aptcache.controller_cache(cache_dir=tmp_path / "cache", proxy=None),
        pytest.raises(aptcache.AptCacheError, match="another run"),
        second,
    ):
        pass
