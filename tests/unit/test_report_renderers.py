"""Each renderer over the hand-written sample runs: JSON, JUnit, Markdown, HTML, terminal."""

from __future__ import annotations

import copy
import json
import re
import shutil
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest

from tfgpu_provision.report import (
    CHECKS,
    REPORT_FILES,
    json_render,
    load_run,
    render,
    terminal,
    write_reports,
)
from tfgpu_provision.report import html as html_render

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "report"
RUNS = sorted(p for p in FIXTURES.iterdir() if p.is_dir())
SIM = FIXTURES / "sample-sim-2host-pass"
GPULESS = FIXTURES / "sample-gpuless-fail"
EIGHT = FIXTURES / "sample-8gpu-one-slow"


def test_the_three_samples_are_there() -> None:
    assert [p.name for p in RUNS] == [
        "sample-8gpu-one-slow",
        "sample-gpuless-fail",
        "sample-sim-2host-pass",
    ]


# --------------------------------------------------------------------------- JSON


@pytest.mark.parametrize("run", RUNS, ids=lambda p: p.name)
def test_json_validates_against_the_schema(run: Path) -> None:
    doc = json.loads(render(load_run(run), "json"))
    jsonschema.Draft202012Validator.check_schema(json_render.schema())
    jsonschema.Draft202012Validator(json_render.schema()).validate(doc)
    assert doc["schema"] == "tfgpu-provision/report/1"
    assert doc["exit_code"] == load_run(run).exit_code


def test_schema_rejects_a_simulated_host_claiming_a_gpu_pass() -> None:
    doc = load_run(SIM).to_dict()
    bad = copy.deepcopy(doc)
    bad["hosts"][0]["verdict"] = "pass"
    with pytest.raises(jsonschema.ValidationError):
        json_render.validate(bad)
    bad = copy.deepcopy(doc)
    bad["hosts"][0]["verdict"] = "great"
    with pytest.raises(jsonschema.ValidationError):
        json_render.validate(bad)
    bad = copy.deepcopy(doc)
    del bad["hosts"][0]["checks"]
    with pytest.raises(jsonschema.ValidationError):
        json_render.validate(bad)
    json_render.validate(doc)  # the untouched document is fine


def test_json_carries_versions_devices_and_verdicts() -> None:
    doc = json.loads(render(load_run(EIGHT), "json"))
    host = doc["hosts"][0]
    assert host["verdict"] == "pass" and host["tensorflow"] == "2.21.0"
    assert host["build_cuda"] == "12.5.1" and host["build_cudnn"] == "9"
    assert [d["slow"] for d in host["device_results"]].count(True) == 1
    assert doc["counts"]["pass"] == 1


# --------------------------------------------------------------------------- JUnit


@pytest.mark.parametrize("run", RUNS, ids=lambda p: p.name)
def test_junit_has_one_case_per_host_and_check(run: Path) -> None:
    report = load_run(run)
    root = ET.fromstring(render(report, "junit"))
    cases = root.findall(".//testcase")
    assert len(cases) == len(report.hosts) * len(CHECKS)
    pairs = {(c.get("classname"), c.get("name")) for c in cases}
    assert pairs == {(h.name, check) for h in report.hosts for check in CHECKS}
    assert int(root.get("tests", "-1")) == len(cases)
    assert int(root.get("failures", "-1")) == len(root.findall(".//testcase/failure"))
    assert int(root.get("skipped", "-1")) == len(root.findall(".//testcase/skipped"))


def test_junit_failures_skips_and_simulated_marks() -> None:
    root = ET.fromstring(render(load_run(GPULESS), "junit"))
    case = {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}
    failure = case[("sbx-1", "gpus_visible")].find("failure")
    assert failure is not None
    assert "no GPU" in failure.get("message", "")
    assert "CUDA_ERROR_NO_DEVICE" in (failure.text or "")
    assert case[("sbx-1", "matmul")].find("skipped") is not None
    assert case[("sbx-1", "versions")].find("failure") is None
    assert case[("sbx-2", "provision")].find("failure") is not None
    assert case[("sbx-2", "matmul")].find("skipped") is not None

    sim = ET.fromstring(render(load_run(SIM), "junit"))
    for c in sim.iter("testcase"):
        if c.get("name") == "provision":
            continue
        prop = c.find("properties/property[@name='simulated']")
        assert prop is not None and prop.get("value") == "true"
        assert "not a GPU result" in (c.findtext("system-out") or "")
    real = ET.fromstring(render(load_run(EIGHT), "junit"))
    assert real.find(".//testcase/properties/property[@name='simulated']") is None


# --------------------------------------------------------------------------- Markdown


def test_markdown_has_a_row_per_host_and_per_device() -> None:
    text = render(load_run(EIGHT), "markdown")
    assert re.search(r"^\| dgx-a \| pass \| 2\.21\.0 \| CUDA 12\.5\.1 / cuDNN 9 \|", text, re.M)
    device_rows = re.findall(r"^\| dgx-a \| GPU:\d \|", text, re.M)
    assert len(device_rows) == 8
    assert re.search(r"^\| dgx-a \| GPU:5 \|.*SLOW", text, re.M)
    assert not re.search(r"^\| dgx-a \| GPU:4 \|.*SLOW", text, re.M)


def test_markdown_failure_section_has_fix_and_log() -> None:
    text = render(load_run(GPULESS), "markdown")
    assert re.search(r"^\| sbx-1 \| fail \|", text, re.M)
    assert re.search(r"^\| sbx-2 \| unreachable \|", text, re.M)
    assert "Fix: Install and load the NVIDIA driver" in text
    assert "CUDA_ERROR_NO_DEVICE" in text


def test_markdown_simulated_never_reads_as_pass() -> None:
    text = render(load_run(SIM), "markdown")
    assert re.search(r"^\| sbx-1 \| simulated \(no GPU\) \|", text, re.M)
    assert not re.search(r"^\| sbx-\d \| pass \|", text, re.M)
    assert "no GPU was tested" in text


# --------------------------------------------------------------------------- HTML


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(text: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Collect()
    parser.feed(text)
    return parser.tags


def test_html_chart_has_one_bar_per_gpu_and_flags_the_slow_one() -> None:
    text = render(load_run(EIGHT), "html")
    tags = _tags(text)
    assert sum(1 for t, _ in tags if t == "svg") == 1
    bars = [a for t, a in tags if t == "rect" and "bar" in (a.get("class") or "").split()]
    assert [a["data-device"] for a in bars] == [
        f"/job:localhost/replica:0/task:0/device:GPU:{i}" for i in range(8)
    ]
    slow = [a["data-device"] for a in bars if a.get("data-slow") == "true"]
    assert slow == ["/job:localhost/replica:0/task:0/device:GPU:5"]
    slow_rows = [a for t, a in tags if t == "tr" and a.get("class") == "slow"]
    assert [a["data-device"] for a in slow_rows] == slow
    widths = {a["data-device"]: float(a["width"] or 0) for a in bars}
    assert widths[slow[0]] < 0.5 * max(widths.values())


def test_html_is_self_contained() -> None:
    for run in RUNS:
        text = render(load_run(run), "html")
        tags = _tags(text)
        assert not [a for t, a in tags if t in ("link", "img", "script", "iframe")]
        assert not [a for _, a in tags if a.get("src") or a.get("href")]
        assert "url(" not in text and "@import" not in text
        assert text.count("<style>") == 1


def test_html_per_host_table_and_simulated_label() -> None:
    text = render(load_run(SIM), "html")
    tags = _tags(text)
    rows = {a["data-host"]: a["data-verdict"] for t, a in tags if t == "tr" and "data-verdict" in a}
    assert rows == {"sbx-1": "simulated", "sbx-2": "simulated"}
    assert 'id="simulated-banner"' in text
    spans = [a.get("class") or "" for t, a in tags if t == "span"]
    assert "verdict v-simulated" in spans
    assert "verdict v-pass" not in spans  # no host gets the GPU-pass badge
    bars = [a for t, a in tags if t == "rect" and "bar" in (a.get("class") or "")]
    assert len(bars) == 4 and all(a["data-simulated"] == "true" for a in bars)


def test_html_escapes_what_hosts_send(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(GPULESS, run)
    doc_path = run / "verify" / "sbx-1.json"
    doc = json.loads(doc_path.read_text())
    doc["diagnoses"][0]["evidence"].append("<script>alert(1)</script>")
    doc_path.write_text(json.dumps(doc))
    text = render(load_run(run), "html")
    assert "<script>" not in text and "&lt;script&gt;" in text


# --------------------------------------------------------------------------- terminal


def test_terminal_table_rows_and_fixes() -> None:
    text = terminal.render_text(load_run(GPULESS), width=220)
    assert re.search(r"sbx-1\s+│\s+fail\s+│\s+2\.21\.0", text)
    assert re.search(r"sbx-2\s+│\s+unreachable", text)
    assert "fix: Install and load the NVIDIA driver" in text
    assert "exit code 1" in text
    sim = terminal.render_text(load_run(SIM), width=220)
    assert re.search(r"sbx-1\s+│\s+simulated \(no GPU\)\s+│", sim)
    assert not re.search(r"│\s+pass\s+│", sim)
    assert "2 simulated" in sim and "yes (2/2)" in sim
    eight = terminal.render_text(load_run(EIGHT), width=220)
    assert "GPU:5: SLOW" in eight and "GPU:4: SLOW" not in eight


# --------------------------------------------------------------------------- files


def test_write_reports_writes_every_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(EIGHT, run)
    paths = write_reports(run)
    assert set(paths) == set(REPORT_FILES)
    for fmt, path in paths.items():
        assert path.parent == run and path.name == REPORT_FILES[fmt]
        assert path.stat().st_size > 200
    json_render.validate(json.loads(paths["json"].read_text()))
    ET.parse(paths["junit"])
    assert "<svg" in paths["html"].read_text()
    assert not list(run.glob(".*.tmp"))


def test_chart_without_numbers_says_so() -> None:
    assert "No device reported" in html_render.chart([])
