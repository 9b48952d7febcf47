"""Which runs start the controller's apt cache, and what they hand Ansible (provision.execute).

Ansible is not run here: ``runner.run`` is replaced by a recorder and the cache by a stand-in
that yields a fixed URL (``fake_cache``), so these tests check the wiring only. The real cache
on sandbox hosts is exercised by ``tests/integration/test_apt_cache.py`` and the fleet bench.
"""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tfgpu_provision import aptcache, provision, runner
from tfgpu_provision.errors import BadInput
from tfgpu_provision.events import RunModel

FAKE_URL = "http://127.0.0.1:3142"


def _inventory(root: Path, group_vars: str = "") -> Path:
    (root / "group_vars").mkdir(parents=True)
    (root / "hosts.yml").write_text(
        textwrap.dedent("""\
            all:
              children:
                gpu_nodes:
                  hosts:
                    node1: {ansible_host: 192.0.2.11}
                    node2: {ansible_host: 192.0.2.12}
            """)
    )
    (root / "group_vars" / "all.yml").write_text(textwrap.dedent(group_vars) or "{}\n")
    return root


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Records the cache's start (bind address), its stop, and the request Ansible gets."""
    seen: dict[str, Any] = {"binds": [], "stopped": 0, "requests": []}

    @contextlib.contextmanager
    def fake_cache(bind: str = "127.0.0.1", *_args: Any, **_kwargs: Any) -> Iterator[str]:
        seen["binds"].append(bind)
        try:
            yield FAKE_URL
        finally:
            seen["stopped"] += 1

    def fake_run(request: runner.RunRequest, **_kwargs: Any) -> runner.RunResult:
        assert seen["stopped"] == 0, "the cache must run for the whole of the run"
        seen["requests"].append(request)
        return runner.RunResult(RunModel(), tmp_path, tmp_path, "successful", 0)

    monkeypatch.setattr(aptcache, "controller_cache", fake_cache)
    monkeypatch.setattr(runner, "run", fake_run)
    return seen


def _run(
    tmp_path: Path,
    *,
    group_vars: str = "",
    extra: tuple[str, ...] = (),
    tags: tuple[str, ...] = (),
    check: bool = False,
    playbook: str = "site.yml",
) -> None:
    options = provision.RunOptions(
        inventory=str(_inventory(tmp_path / "inv", group_vars)),
        limit=None,
        tags=list(tags),
        check=check,
        extra_vars=list(extra),
        forks=None,
        run_root=tmp_path / "runs",
        tensorflow=None,
    )
    # The wheelhouse has its own tests; keep this run to the apt cache.
    prepared = provision.prepare(options, playbook)
    prepared.request.extravars.setdefault("tfgpu_wheelhouse", False)
    provision.execute(prepared, "test")


def test_controller_cache_runs_for_the_run_and_hosts_get_its_url(
    calls: dict[str, Any], tmp_path: Path
) -> None:
    _run(tmp_path, extra=("tfgpu_apt_cache=controller", "tfgpu_wheelhouse=false"))
    assert calls["binds"] == ["127.0.0.1"]
    assert calls["stopped"] == 1
    (request,) = calls["requests"]
    assert request.extravars["tfgpu_apt_cache_url"] == FAKE_URL


def test_cache_binds_the_address_the_hosts_reach(calls: dict[str, Any], tmp_path: Path) -> None:
    _run(
        tmp_path,
        group_vars="""\
            tfgpu_apt_cache: controller
            tfgpu_wheelhouse: false
            tfgpu_wheelhouse_address: 192.0.2.1
            """,
    )
    assert calls["binds"] == ["192.0.2.1"]


@pytest.mark.parametrize(
    ("why", "kwargs"),
    [
        ("no host asks for it", {"extra": ("tfgpu_wheelhouse=false",)}),
        (
            "an existing proxy wins",
            {
                "extra": (
                    "tfgpu_apt_cache=controller",
                    "tfgpu_apt_proxy=http://192.0.2.5:3142",
                    "tfgpu_wheelhouse=false",
                )
            },
        ),
        ("check mode installs nothing", {"extra": ("tfgpu_apt_cache=controller",), "check": True}),
        (
            "verify installs nothing",
            {"extra": ("tfgpu_apt_cache=controller",), "tags": ("verify",)},
        ),
        (
            "the preflight playbook installs nothing",
            {"extra": ("tfgpu_apt_cache=controller",), "playbook": "preflight.yml"},
        ),
    ],
)
def test_no_cache_when_the_run_downloads_no_package(
    calls: dict[str, Any], tmp_path: Path, why: str, kwargs: dict[str, Any]
) -> None:
    _run(tmp_path, **kwargs)
    assert calls["binds"] == [], why
    (request,) = calls["requests"]
    assert "tfgpu_apt_cache_url" not in request.extravars


@pytest.mark.parametrize("tags", [("driver",), ("packages",), ("env",), ("verify,driver",)])
def test_a_stage_that_installs_packages_gets_the_cache(
    calls: dict[str, Any], tmp_path: Path, tags: tuple[str, ...]
) -> None:
    _run(tmp_path, extra=("tfgpu_apt_cache=controller", "tfgpu_wheelhouse=false"), tags=tags)
    assert calls["binds"] == ["127.0.0.1"]


def test_two_controller_addresses_are_bad_input_before_any_start(
    calls: dict[str, Any], tmp_path: Path
) -> None:
    inv = _inventory(tmp_path / "inv", "tfgpu_apt_cache: controller\ntfgpu_wheelhouse: false\n")
    (inv / "host_vars").mkdir()
    (inv / "host_vars" / "node2.yml").write_text("tfgpu_wheelhouse_address: 192.0.2.1\n")
    options = provision.RunOptions(
        inventory=str(inv),
        limit=None,
        tags=[],
        check=False,
        extra_vars=[],
        forks=None,
        run_root=tmp_path / "runs",
        tensorflow=None,
    )
    prepared = provision.prepare(options, "site.yml")
    with pytest.raises(BadInput, match="tfgpu_wheelhouse_address once"):
        provision.execute(prepared, "test")
    assert calls["binds"] == [] and calls["requests"] == []


def test_comma_separated_tags_are_split_like_repeated_ones(
    calls: dict[str, Any], tmp_path: Path
) -> None:
    _run(tmp_path, extra=("tfgpu_wheelhouse=false",), tags=("driver, cuda", "env"))
    (request,) = calls["requests"]
    assert request.tags == ["driver", "cuda", "env"]
