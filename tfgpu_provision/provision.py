"""The run flows behind the CLI: validate everything first, then run, then summarise.

Nothing here contacts a host before the inventory, the options and the requested
TensorFlow release have been validated (bad input -> exit 2, no host touched).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfgpu_provision import aptcache, compat, inventory, runner, wheelhouse
from tfgpu_provision.console import console, err_console
from tfgpu_provision.errors import BadInput, TfgpuError
from tfgpu_provision.events import RunModel
from tfgpu_provision.progress import Progress, host_table

MAX_FORKS = 50


@dataclass
class RunOptions:
    inventory: str
    limit: str | None
    tags: list[str]
    check: bool
    extra_vars: list[str]
    forks: int | None
    run_root: Path
    tensorflow: str | None
    verbosity: int = 0
    vault_password_file: Path | None = None
    retry_failed: bool = False


@dataclass
class Prepared:
    request: runner.RunRequest
    inventory: inventory.Inventory
    hosts: list[str]


def _limit_hosts(inv: inventory.Inventory, limit: str | None) -> list[str]:
    hosts = sorted(inv.gpu_nodes())
    if not limit:
        return hosts
    names = [part for part in limit.replace(":", ",").split(",") if part]
    if any(ch in limit for ch in "*?[]!&~@"):
        return hosts  # an Ansible pattern: Ansible itself resolves it
    known = set(inv.hosts) | set(inv.groups)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BadInput(
            f"--limit names {', '.join(unknown)}, which the inventory {inv.path} does not have.",
            fix=f"use one of: {', '.join(hosts)}",
        )
    selected: set[str] = set()
    for name in names:
        selected.update(inv.groups.get(name, [name]))
    return sorted(h for h in hosts if h in selected)


# Play keywords (serial, max_fail_percentage) are templated before any host is known, so
# Ansible cannot read them from the inventory's host or group vars: pass them as extra vars.
_PLAY_KEYWORD_OPTIONS = ("tfgpu_serial", "tfgpu_max_fail_percentage")


def _play_keywords(
    inv: inventory.Inventory, hosts: list[str], extravars: dict[str, object]
) -> None:
    for name in _PLAY_KEYWORD_OPTIONS:
        if name in extravars:
            continue
        values = {repr(inv.options_for(h)[name]) for h in hosts}
        if len(values) > 1:
            raise BadInput(
                f"{name} differs between hosts ({', '.join(sorted(values))}); "
                "it applies to a whole play.",
                fix=f"set {name} once, in group_vars/all.yml or with -e {name}=...",
            )
        value = inv.options_for(hosts[0])[name]
        if value is not None:
            extravars[name] = value


def _vault_file(path: Path | None) -> Path | None:
    if path is None:
        return None
    if not path.is_file():
        raise BadInput(
            f"vault password file {path} does not exist.", fix="pass the file that holds it"
        )
    return path.resolve()


def _last_failed(run_root: Path) -> str:
    """The hosts that failed or were unreachable in the newest run under ``run_root``."""
    runs = sorted(run_root.expanduser().glob("*/summary.json"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise BadInput(
            f"--retry-failed: no earlier run in {run_root}.", fix="run without --retry-failed first"
        )
    summary = json.loads(runs[-1].read_text())
    failed = [
        h["name"] for h in summary.get("hosts", []) if h.get("status") in ("failed", "unreachable")
    ]
    if not failed:
        raise NothingToRetry(
            f"the last run ({runs[-1].parent.name}) had no failed or unreachable host."
        )
    return ",".join(sorted(failed))


class NothingToRetry(TfgpuError):
    """--retry-failed found nothing to do: not an error."""

    exit_code = 0


def prepare(options: RunOptions, playbook: str) -> Prepared:
    """Validate all input and build the run request; raises BadInput before any connection."""
    path = inventory.locate(options.inventory)
    inv = inventory.load(path)
    extravars = inventory.coerce_extra_vars(options.extra_vars)
    if options.tensorflow is not None:
        extravars["tfgpu_tensorflow_version"] = options.tensorflow
    inventory.validate_vars(extravars, "the command line")
    inventory.validate(inv, extravars)
    if options.retry_failed:
        if options.limit:
            raise BadInput("--retry-failed and --limit both pick hosts.", fix="use one of them")
        options.limit = _last_failed(options.run_root)
    hosts = _limit_hosts(inv, options.limit)
    if not hosts:
        raise BadInput(
            f"no gpu_nodes host matches --limit {options.limit}.", fix="check the host names"
        )
    for host in hosts:
        request = extravars.get(
            "tfgpu_tensorflow_version", inv.hosts[host].get("tfgpu_tensorflow_version")
        )
        try:
            compat.parse_request(request)
        except BadInput as exc:
            raise BadInput(f"host {host}: {exc.message}", fix=exc.fix) from None
    _play_keywords(inv, hosts, extravars)
    if options.forks is not None and options.forks < 1:
        raise BadInput(
            f"--forks {options.forks} is not a positive number.", fix="use --forks 1 or more"
        )
    forks = options.forks or min(MAX_FORKS, max(5, len(hosts)))
    request = runner.RunRequest(
        playbook=playbook,
        inventory=path,
        limit=options.limit,
        # `--tags env,verify` and `-t env -t verify` mean the same: one tag per item.
        tags=[tag.strip() for item in options.tags for tag in item.split(",") if tag.strip()],
        check=options.check,
        extravars=extravars,
        forks=forks,
        run_root=options.run_root,
        verbosity=options.verbosity,
        vault_password_file=_vault_file(options.vault_password_file),
    )
    return Prepared(request=request, inventory=inv, hosts=hosts)


def execute(prepared: Prepared, title: str) -> runner.RunResult:
    with contextlib.ExitStack() as servers:
        if _installs_packages(prepared.request):
            prepared.request.extravars.update(_apt_cache(prepared, servers))
        if _installs_env(prepared.request):
            urls = _serve_wheelhouses(prepared, servers)
            if urls:
                prepared.request.extravars["tf_env_pip_find_links"] = " ".join(urls)
        with Progress(console, title) as progress:
            result = runner.run(
                prepared.request, on_event=progress, label=Path(prepared.request.playbook).stem
            )
    return result


# Entry playbooks that import stages/packages.yml, and the tags that select it.
_PACKAGE_PLAYBOOKS = ("site", "driver", "cuda", "cudnn", "env")
_PACKAGE_TAGS = {"driver", "cuda", "cudnn", "env", "packages"}


def _installs_packages(request: runner.RunRequest) -> bool:
    """Whether this run runs the packages stage (and so may want the controller's apt cache)."""
    if request.check or Path(request.playbook).stem not in _PACKAGE_PLAYBOOKS:
        return False
    return not request.tags or bool(_PACKAGE_TAGS & set(request.tags))


def _host_options(prepared: Prepared) -> dict[str, dict[str, Any]]:
    overrides = _option_overrides(prepared)
    return {h: prepared.inventory.options_for(h) | overrides for h in prepared.hosts}


def _apt_cache(prepared: Prepared, servers: contextlib.ExitStack) -> dict[str, object]:
    """Start the controller's apt-cacher-ng for the run when a host asks for it.

    Hosts with ``tfgpu_apt_cache: controller`` (and no ``tfgpu_apt_proxy``) get the cache's
    URL through the extra var ``tfgpu_apt_cache_url``; the cache binds the address the hosts
    reach the controller on (``tfgpu_wheelhouse_address``) and stops when the run ends.
    """
    options = _host_options(prepared)
    wanting = [h for h, o in options.items() if aptcache.wants_controller_cache(o)]
    if not wanting:
        return {}
    addresses = {str(options[h].get("tfgpu_wheelhouse_address") or "127.0.0.1") for h in wanting}
    if len(addresses) > 1:
        raise BadInput(
            "hosts that use the controller's apt cache name different controller addresses "
            f"({', '.join(sorted(addresses))}); the cache binds one.",
            fix="set tfgpu_wheelhouse_address once for them, e.g. in group_vars/all.yml",
        )
    return servers.enter_context(
        aptcache.for_run(
            {h: options[h] for h in wanting},
            addresses.pop(),
            progress=lambda message: console.print(f"apt cache: {message}", markup=False),
        )
    )


def _installs_env(request: runner.RunRequest) -> bool:
    """Whether this run may build a TensorFlow env (and so wants the wheelhouse)."""
    if request.check or Path(request.playbook).stem not in ("site", "env"):
        return False
    return not request.tags or "env" in request.tags


def _serve_wheelhouses(prepared: Prepared, servers: contextlib.ExitStack) -> list[str]:
    """Download the envs' wheels once on the controller and serve them for the run.

    A read-only preflight pass learns each host's resolved stack; hosts that install CUDA
    and cuDNN from pip wheels get one wheelhouse per (requirement, Python), built once and
    cached under ~/.cache/tfgpu-provision/wheelhouse, verified by hash, served over HTTP on
    tfgpu_wheelhouse_address. The hosts then install with --no-index from it.
    """
    options = _host_options(prepared)
    wanted = [h for h, o in options.items() if o.get("tfgpu_wheelhouse")]
    if not wanted:
        return []
    console.print(
        f"wheelhouse: resolving the stacks of {len(wanted)} host(s) (read-only preflight)"
    )
    request = dataclasses.replace(
        prepared.request, playbook="preflight.yml", check=True, tags=[], limit=",".join(wanted)
    )
    model = runner.run(request, label="prepare").model
    pairs: dict[tuple[str, str, str | None], list[str]] = {}
    for name in wanted:
        host = model.hosts.get(name)
        stack = ((host.preflight or {}).get("resolution") or {}).get("stack") if host else None
        if not isinstance(stack, dict) or (stack.get("sources") or {}).get("cuda") != "pip":
            continue
        requirement, python = (
            stack.get("pip_requirement"),
            (stack.get("python") or {}).get("selected"),
        )
        if requirement and python:
            pairs.setdefault(
                (requirement, python, options[name].get("tfgpu_pip_index_url")), []
            ).append(name)
    urls = []
    for (requirement, python, index_url), hosts in sorted(pairs.items(), key=lambda kv: kv[0][:2]):
        console.print(
            f"wheelhouse: {requirement} for Python {python} ({len(hosts)} host(s))", markup=False
        )
        path = wheelhouse.build(
            requirement,
            python,
            index_url=index_url,
            progress=lambda message: console.print(f"wheelhouse: {message}", markup=False),
        )
        address = str(options[hosts[0]].get("tfgpu_wheelhouse_address") or "127.0.0.1")
        # build() has just checked it (hashed, or unchanged since hashed): no second pass.
        urls.append(servers.enter_context(wheelhouse.serve(path, bind=address, verified=True)))
    return urls


def _option_overrides(prepared: Prepared) -> dict[str, object]:
    names = inventory.options()
    return {k: v for k, v in prepared.request.extravars.items() if k in names}


def report_run(result: runner.RunResult) -> int:
    """Write the run's reports, print the terminal report, return the run's exit code."""
    from tfgpu_provision.report import load_run, terminal, write_reports

    print_summary(result)
    if not result.model.finished:
        return result.exit_code
    report = load_run(result.run_dir)
    paths = write_reports(result.run_dir, report)
    console.print(terminal.render(report))
    console.print(
        f"Reports: {', '.join(str(p) for p in paths.values())}", markup=False, soft_wrap=True
    )
    return report.exit_code


def print_summary(result: runner.RunResult) -> None:
    model: RunModel = result.model
    console.print(host_table(model, "Summary"))
    for host in sorted(model.hosts.values(), key=lambda h: h.name):
        for error in host.errors:
            err_console.print(
                f"{host.name}: {error['kind']} in '{error['task']}': {error['message']}",
                markup=False,
            )
    for message in model.guard_errors:
        err_console.print(f"guard: {message}", markup=False)
    if not model.finished and not model.cancelled:
        err_console.print(
            f"The run did not finish; Ansible said:\n{result.output_tail()}", markup=False
        )
    if model.cancelled:
        err_console.print(f"Interrupted: partial summary in {result.run_dir / 'summary.json'}")
    elif result.exit_code:
        err_console.print(f"Run artifacts (events, stdout): {result.artifacts}", markup=False)


def default_run_root() -> Path:
    return Path(os.environ.get("TFGPU_RUN_DIR", ".tfgpu/runs"))
