"""The HTML report opened in a real browser: headless Chromium renders the table and the chart.

Needs Debian's ``chromium`` package (installed by ``make setup``); without it the tests are
skipped with a reason that says so. The screenshot is checked with a small PNG decoder
(zlib + struct): right size, not blank, and the chart's bar colours are on the page.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from tfgpu_provision.report import write_reports
from tfgpu_provision.report.html import BAR_COLOR, BAR_SLOW_COLOR

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "report"
WIDTH, HEIGHT = 1280, 2000
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
)


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


# --------------------------------------------------------------------------- PNG


def decode_png(data: bytes) -> tuple[int, int, int, list[bytes]]:
    """(width, height, bytes per pixel, rows) of an 8-bit RGB/RGBA PNG; raises on corruption."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + length
    assert header is not None, "no IHDR chunk"
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, header
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    assert len(raw) == height * (stride + 1), "pixel data has the wrong size"
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind = raw[start]
        line = bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        else:
            assert kind == 0, f"unknown filter {kind}"
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def _rgb(color: str) -> tuple[int, int, int]:
    value = int(color.lstrip("#"), 16)
    return value >> 16, (value >> 8) & 0xFF, value & 0xFF


def pixel_counts(bpp: int, rows: list[bytes], colors: dict[str, str]) -> dict[str, int]:
    """Non-white pixels, and pixels within a small distance of each named colour."""
    targets = {name: _rgb(c) for name, c in colors.items()}
    counts = dict.fromkeys(["non_white", *targets], 0)
    for row in rows:
        for x in range(0, len(row), bpp):
            r, g, b = row[x], row[x + 1], row[x + 2]
            if r > 245 and g > 245 and b > 245:
                continue
            counts["non_white"] += 1
            for name, (tr, tg, tb) in targets.items():
                if abs(r - tr) + abs(g - tg) + abs(b - tb) < 24:
                    counts[name] += 1
    return counts


def test_png_decoder_rejects_corruption() -> None:
    with pytest.raises(AssertionError):
        decode_png(b"GIF89a" + bytes(20))
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", 0)  # wrong CRC
    with pytest.raises(AssertionError, match="CRC"):
        decode_png(b"\x89PNG\r\n\x1a\n" + chunk)


# --------------------------------------------------------------------------- the page


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("report") / "sample-8gpu-one-slow"
    shutil.copytree(FIXTURES / "sample-8gpu-one-slow", run)
    return write_reports(run)["html"]


@needs_chromium
def test_screenshot_shows_the_table_and_the_chart(page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    proc = chromium(
        tmp_path, f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}", page.as_uri()
    )
    assert shot.is_file(), f"no screenshot; chromium said:\n{proc.stderr[-3000:]}"
    width, height, bpp, rows = decode_png(shot.read_bytes())
    assert (width, height) == (WIDTH, HEIGHT)
    counts = pixel_counts(bpp, rows, {"bar": BAR_COLOR, "slow": BAR_SLOW_COLOR})
    assert counts["non_white"] > 0.02 * WIDTH * HEIGHT, counts  # text, tables, chart
    # 7 normal bars of ~540 px x 18 px and one slow bar of ~250 px x 18 px.
    assert counts["bar"] > 7 * 400 * 14, counts
    assert counts["slow"] > 200 * 14, counts


@needs_chromium
def test_rendered_dom_has_the_tables_and_one_bar_per_gpu(page: Path, tmp_path: Path) -> None:
    proc = chromium(tmp_path, "--dump-dom", page.as_uri())
    dom = proc.stdout
    assert proc.returncode == 0, proc.stderr[-3000:]
    for table in ("hosts", "checks", "devices"):
        assert f'<table id="{table}">' in dom
    assert '<svg id="tflops-chart"' in dom
    bars = re.findall(r'<rect class="bar[^"]*"[^>]*data-device="([^"]+)"', dom)
    assert len(bars) == 8
    slow = re.findall(r'<rect class="bar slow"[^>]*data-device="([^"]+)"', dom)
    assert slow == ["/job:localhost/replica:0/task:0/device:GPU:5"]
