"""Known failure signatures -> diagnoses (cause and fix in plain words).

The rules are data, in ``data/signatures.yaml`` (one copy). This module loads and checks them
and applies them to a log text plus the context the verify check found (GPUs missing?
simulated? CUDA build?). The verify check script carries a small matcher with the same rules,
fed the same data as JSON by the ``tf_verify`` role (lookup ``tfgpu_signatures``); the tests
hold both matchers to the same results.

``python -m tfgpu_provision.diagnose LOGFILE`` prints the diagnoses for a saved log.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

SIGNATURES_PATH = Path(__file__).resolve().parent / "data" / "signatures.yaml"
SIGNATURES_SCHEMA = "tfgpu-provision/signatures/1"

SEVERITIES = ("error", "warning", "info")
# How many matching log lines a diagnosis quotes, and how long each quote may be.
MAX_QUOTED_LINES = 3
MAX_QUOTE_CHARS = 500


class SignatureError(ValueError):
    """The signatures data file is malformed (a defect of the package, not of the user)."""


@dataclass(frozen=True)
class Signature:
    id: str
    title: str
    severity: str
    cause: str
    fix: str
    source: str
    pattern: str | None = None
    when: Mapping[str, Any] = field(default_factory=dict)
    explains_missing_gpu: bool = False
    fallback: bool = False
    priority: int = 0
    examples: tuple[str, ...] = ()

    def compiled(self) -> re.Pattern[str] | None:
        return _compile(self.pattern) if self.pattern else None


@dataclass(frozen=True)
class Diagnosis:
    id: str
    title: str
    severity: str
    cause: str
    fix: str
    source: str
    explains_missing_gpu: bool
    lines: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["lines"] = list(self.lines)
        return data


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _required_str(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise SignatureError(f"{where}: '{key}' must be a non-empty string")
    return value.strip()


def parse_signatures(data: Mapping[str, Any]) -> tuple[Signature, ...]:
    """Check the data file's content and turn it into signatures (raises SignatureError)."""
    if data.get("schema") != SIGNATURES_SCHEMA:
        raise SignatureError(f"signatures: schema must be {SIGNATURES_SCHEMA!r}")
    context_keys = data.get("context_keys")
    if not isinstance(context_keys, Mapping):
        raise SignatureError("signatures: 'context_keys' must be a mapping")
    entries = data.get("signatures")
    if not isinstance(entries, list) or not entries:
        raise SignatureError("signatures: 'signatures' must be a non-empty list")
    seen: set[str] = set()
    result: list[Signature] = []
    for index, entry in enumerate(entries):
        where = f"signatures[{index}]"
        if not isinstance(entry, Mapping):
            raise SignatureError(f"{where}: must be a mapping")
        sig_id = _required_str(entry, "id", where)
        where = f"signature {sig_id}"
        if sig_id in seen:
            raise SignatureError(f"{where}: duplicate id")
        seen.add(sig_id)
        severity = _required_str(entry, "severity", where)
        if severity not in SEVERITIES:
            raise SignatureError(f"{where}: severity must be one of {', '.join(SEVERITIES)}")
        pattern = entry.get("pattern")
        if pattern is not None:
            if not isinstance(pattern, str) or not pattern:
                raise SignatureError(f"{where}: 'pattern' must be a non-empty string")
            try:
                _compile(pattern)
            except re.error as exc:
                raise SignatureError(f"{where}: bad pattern: {exc}") from exc
        when = entry.get("when") or {}
        if not isinstance(when, Mapping):
            raise SignatureError(f"{where}: 'when' must be a mapping")
        unknown = sorted(set(when) - set(context_keys))
        if unknown:
            raise SignatureError(f"{where}: unknown context keys in 'when': {', '.join(unknown)}")
        if pattern is None and not when:
            raise SignatureError(f"{where}: needs a 'pattern', a 'when', or both")
        priority = entry.get("priority", 0)
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise SignatureError(f"{where}: 'priority' must be an integer")
        examples = entry.get("examples") or []
        if not isinstance(examples, list) or not all(isinstance(e, str) for e in examples):
            raise SignatureError(f"{where}: 'examples' must be a list of strings")
        result.append(
            Signature(
                id=sig_id,
                title=_required_str(entry, "title", where),
                severity=severity,
                cause=_required_str(entry, "cause", where),
                fix=_required_str(entry, "fix", where),
                source=_required_str(entry, "source", where),
                pattern=pattern,
                when=dict(when),
                explains_missing_gpu=bool(entry.get("explains_missing_gpu", False)),
                fallback=bool(entry.get("fallback", False)),
                priority=priority,
                examples=tuple(examples),
            )
        )
    return tuple(result)


def load_raw(path: Path = SIGNATURES_PATH) -> dict[str, Any]:
    """The data file as loaded (what the role ships to hosts as JSON)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise SignatureError(f"{path}: not a mapping")
    parse_signatures(data)
    return data


@lru_cache(maxsize=4)
def load_signatures(path: Path = SIGNATURES_PATH) -> tuple[Signature, ...]:
    return parse_signatures(load_raw(path))


def _when_holds(when: Mapping[str, Any], context: Mapping[str, Any]) -> bool:
    return all(context.get(key) == value for key, value in when.items())


def _quote(line: str) -> str:
    return line.strip()[:MAX_QUOTE_CHARS]


def diagnose(
    log_text: str | Sequence[str],
    context: Mapping[str, Any] | None = None,
    signatures: Iterable[Signature] | None = None,
) -> list[Diagnosis]:
    """Every signature that matches the log and the context, most relevant first.

    ``log_text`` is the log as one string or as lines. ``context`` uses the keys declared in
    the data file's ``context_keys``; a missing key never satisfies a ``when``.
    """
    lines = log_text.splitlines() if isinstance(log_text, str) else list(log_text)
    context = context or {}
    rules = tuple(signatures) if signatures is not None else load_signatures()
    gpus_missing = bool(context.get("gpus_missing"))
    ranked: list[tuple[tuple[int, int, int, int, int, int], Diagnosis]] = []
    for order, sig in enumerate(rules):
        if sig.when and not _when_holds(sig.when, context):
            continue
        quoted: list[str] = []
        first_line = len(lines)
        regex = sig.compiled()
        if regex is not None:
            for index, line in enumerate(lines):
                if regex.search(line):
                    first_line = min(first_line, index)
                    if len(quoted) < MAX_QUOTED_LINES:
                        quoted.append(_quote(line))
            if not quoted:
                continue
        key = (
            0 if gpus_missing and sig.explains_missing_gpu else 1,
            -sig.priority,
            SEVERITIES.index(sig.severity),
            1 if sig.fallback else 0,
            first_line,
            order,
        )
        ranked.append(
            (
                key,
                Diagnosis(
                    id=sig.id,
                    title=sig.title,
                    severity=sig.severity,
                    cause=sig.cause,
                    fix=sig.fix,
                    source=sig.source,
                    explains_missing_gpu=sig.explains_missing_gpu,
                    lines=tuple(quoted),
                ),
            )
        )
    ranked.sort(key=lambda item: item[0])
    return [diagnosis for _, diagnosis in ranked]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m tfgpu_provision.diagnose LOGFILE", file=sys.stderr)
        return 2
    text = Path(args[0]).read_text(encoding="utf-8", errors="replace")
    print(json.dumps([d.to_dict() for d in diagnose(text)], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
