"""A huge page (200 inches a side) renders within the pixel budget: its pixmap would take
2.5 GB at 144 DPI. Measured in a fresh process: its peak resident memory stays small."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pymupdf

from docpool.render import PIXEL_BUDGET

SCRIPT = r"""
import json, re, sys
from pathlib import Path
from docpool import render_pages, write_pages
pdf, out = sys.argv[1], Path(sys.argv[2])
(image,) = render_pages(pdf, [1], dpi=144)
(written,) = write_pages(pdf, [1], out, dpi=144, color="rgb")
print(json.dumps({
    "size": image.size,
    "written": written.stat().st_size,
    # VmHWM is this process image's own peak; getrusage's ru_maxrss survives exec on Linux,
    # so it would report the forking pytest's size when that is larger (proc(5), getrusage(2)).
    "max_rss_mib": int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
                       .group(1)) / 1024,
}))
"""


def test_a_200_inch_page_renders_within_the_pixel_budget(tmp_path: Path) -> None:
    doc = pymupdf.open()
    page = doc.new_page(width=14400, height=14400)  # 200 x 200 inches, PDF's largest page
    page.insert_text((720, 720), "Site plan", fontname="helv", fontsize=400)
    page.draw_rect(pymupdf.Rect(1000, 1000, 13000, 13000), color=(0.2, 0.3, 0.8), width=40)
    doc.save(tmp_path / "huge.pdf")
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "huge.pdf"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    width, height = result["size"]
    assert width == height and width * height <= PIXEL_BUDGET
    assert width * height > 0.95 * PIXEL_BUDGET  # as sharp as the budget allows
    assert result["written"] > 0
    # Uncapped: 28800 x 28800 x 3 bytes, 2.3 GiB for the pixmap alone.
    assert result["max_rss_mib"] < 600
