"""The research report (src/hka/report/report.cc) opened in headless Chromium.

A draft whose every string is hostile (script tags, event handlers, broken-out attributes) is
turned into report.html by build/tests/hka/report_fixture (a ReportDraft as JSON on stdin,
the HTML on stdout). Chromium must run none of it, and every figure (an SVG in a data: URI)
must render. A control page with the same payloads left unescaped shows that the checks
would notice a script that ran.

The fixture is $KDR_BUILD/tests/hka/report_fixture (default build/). Chromium is the Debian
package `chromium` that scripts/setup installs.

Run: .venv/bin/python -m pytest tests/python/test_report_browser.py
"""

import base64
import json
import os
import pathlib
import re
import shutil
import struct
import subprocess
import tempfile
import xml.etree.ElementTree as ET
import zlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURE = pathlib.Path(os.environ.get("KDR_BUILD", ROOT / "build")) / "tests" / "hka" / "report_fixture"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

if not FIXTURE.exists():
    pytest.skip(f"no report_fixture at {FIXTURE} (build it, or set KDR_BUILD)", allow_module_level=True)

# Each payload, if it ran, would leave a mark the dumped DOM shows: the title "pwned" or an
# element with id "pwned".
MARK = "document.title='pwned';var e=document.createElement('div');e.id='pwned';document.body.appendChild(e)"
PAYLOADS = [
    f"<script>{MARK}</script>",
    f'"><img src=x onerror="{MARK}">',
    f"'><svg onload=\"{MARK}\"></svg>",
    f"</title><script>{MARK}</script>",
    "<iframe src=\"javascript:alert(1)\"></iframe> & <b>bold</b>",
]
HOSTILE = " ".join(PAYLOADS)

# Distinctive colours, one per figure, looked for in the screenshot.
COLOURS = [(0xE6, 0x19, 0x4B), (0x3C, 0xB4, 0x4B), (0x43, 0x63, 0xD8)]


def svg(colour):
    r, g, b = colour
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="320" height="160" viewBox="0 0 320 160">'
        f'<rect x="0" y="0" width="320" height="160" fill="#{r:02x}{g:02x}{b:02x}"/>'
        "<script>document.title='pwned'</script></svg>"
    )


def hostile_draft():
    figures = [
        {
            "key": f"F{i + 1}",
            "title": HOSTILE,
            "caption": HOSTILE + f" [T1] Figure F{i + 1}",
            "svg": svg(colour),
            "svg_path": f"figures/fig{i + 1}.svg",
            "source_key": "T1",
        }
        for i, colour in enumerate(COLOURS)
    ]
    return {
        "title": HOSTILE,
        "question": HOSTILE,
        "abstract": HOSTILE + " [T1] 12.5%",
        "introduction": HOSTILE + " [D1]",
        "sections": [
            {"heading": HOSTILE, "text": HOSTILE + "\n\n- " + HOSTILE + "\n\n**" + HOSTILE + "**",
             "figure_keys": ["F1", "F2"], "table_keys": ["R1"]},
        ],
        "conclusion": HOSTILE + " [X9] 987",
        "figures": figures,  # F3 is placed nowhere: it goes to "Additional figures"
        "tables": [{"key": "R1", "title": HOSTILE, "columns": [HOSTILE, "n"],
                    "rows": [[HOSTILE, "12.5%"]], "source_key": "T1"}],
        "sources": [
            {"key": "T1", "kind": "table", "title": HOSTILE, "location": HOSTILE, "sql": HOSTILE,
             "csv_path": HOSTILE, "columns": [HOSTILE], "rows": [[HOSTILE, "0.125"]]},
            {"key": "D1", "kind": "document", "title": HOSTILE, "location": HOSTILE, "text": HOSTILE},
        ],
        "notes": [HOSTILE],
        "generated_by": HOSTILE,
    }


def chromium(*args):
    if not os.path.exists(CHROMIUM):
        pytest.fail("chromium is missing: run scripts/setup (it installs the Debian package chromium)")
    with tempfile.TemporaryDirectory(prefix="kdr-chromium-") as profile:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
        proc = subprocess.run(cmd, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    return proc.stdout.decode(errors="replace")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    html = subprocess.run([str(FIXTURE)], input=json.dumps(hostile_draft()).encode(),
                          capture_output=True, check=True, timeout=60).stdout.decode()
    path = folder / "report.html"
    path.write_text(html, encoding="utf-8")
    return path


def no_script_ran(dom):
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    return (title is None or "pwned" != title.group(1).strip()) and 'id="pwned"' not in dom


def test_control_page_shows_a_script_that_ran(tmp_path):
    page = tmp_path / "control.html"
    page.write_text(f"<!DOCTYPE html><html><head><title>x</title></head><body>{PAYLOADS[0]}</body></html>")
    assert not no_script_ran(chromium("--dump-dom", page.as_uri()))


def test_no_script_runs(report):
    dom = chromium("--virtual-time-budget=2000", "--dump-dom", report.as_uri())
    assert "<main>" in dom
    assert no_script_ran(dom), "a payload ran: the DOM has its mark"
    # The payloads are in the page as text.
    assert "&lt;script&gt;" in dom


def test_figures_are_valid_svg_images(report):
    dom = chromium("--dump-dom", report.as_uri())
    uris = re.findall(r'<img src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', dom)
    assert len(uris) == len(COLOURS)
    for data in uris:
        root = ET.fromstring(base64.b64decode(data))
        assert root.tag == "{http://www.w3.org/2000/svg}svg"


def png_pixels(data):
    """(width, height, rows of RGB(A) bytes) of an 8-bit RGB or RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour_type = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour_type in (2, 6)
            channels = 3 if colour_type == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b = prev[x]
            c = prev[x - channels] if x >= channels else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, channels, rows


def test_every_figure_renders(report, tmp_path):
    shot = tmp_path / "report.png"
    chromium("--hide-scrollbars", "--window-size=1000,9000", f"--screenshot={shot}", report.as_uri())
    width, height, channels, rows = png_pixels(shot.read_bytes())
    counts = {colour: 0 for colour in COLOURS}
    for row in rows[::2]:
        for x in range(0, width * channels, channels * 2):
            pixel = tuple(row[x:x + 3])
            if pixel in counts:
                counts[pixel] += 1
    for colour, count in counts.items():
        assert count > 1000, f"figure colour #{bytes(colour).hex()} barely on screen ({count} px)"
