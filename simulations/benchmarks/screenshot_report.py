"""Screenshot the first screen of a run's HTML report, as a reader sees it at default zoom.

Renders ``report.html`` of RUN_DIR afresh (:func:`simulations.report.render_report`, which writes
only the report's own files), then takes one headless-Chromium screenshot of its top, 1280x800 by
default, to check that the first screen holds the guarantee, the accuracy table, the ticket's
sparsity and MACs kept, and the ε budget.

Needs Debian's ``chromium`` package (``apt-get install -y chromium``, ``/usr/bin/chromium``); no
test or CI step depends on it. Chromium loads nothing from the network (the report is
self-contained, and the flags below switch its background traffic off).

    python -m simulations.benchmarks.screenshot_report RUN_DIR [--out /tmp/report_top.png]
        [--size 1280x800] [--chromium /usr/bin/chromium] [--no-render]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from simulations.report import ReportError, render_report
from simulations.report.outputs import HTML_FILE

CHROMIUM = "chromium"
TIMEOUT_S = 120
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
)


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, e.g. 1280x800. Found {text!r}.") from err
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive. Found {text!r}.")
    return width, height


def screenshot(html: Path, out: Path, *, size: tuple[int, int], chromium: str) -> None:
    """Write ``out``, a PNG of the top ``size`` of ``html`` in headless Chromium.

    Raises
    ------
    RuntimeError
        If Chromium is missing, fails, times out or writes no PNG (one line).
    """
    binary = shutil.which(chromium)
    if binary is None:
        raise RuntimeError(f"{chromium} not found: install Debian's chromium (apt-get install -y chromium)"
                           " or pass --chromium PATH.")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)  # a PNG left by an earlier call must not pass for this one
    with tempfile.TemporaryDirectory(prefix="dppt-chromium-") as profile:
        command = [binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
                   f"--screenshot={out}", html.resolve().as_uri()]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as err:
            raise RuntimeError(f"{chromium} did not finish within {TIMEOUT_S} s.") from err
    if result.returncode != 0 or not out.is_file() or not out.read_bytes().startswith(b"\x89PNG"):
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{chromium} wrote no screenshot (exit code {result.returncode}): {tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulations.benchmarks.screenshot_report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="the run directory")
    parser.add_argument("--out", type=Path, default=Path("/tmp/report_top.png"), help="the PNG to write")
    parser.add_argument("--size", type=_size, default=(1280, 800), help="window WIDTHxHEIGHT (default 1280x800)")
    parser.add_argument("--chromium", default=CHROMIUM, help="the Chromium binary (default: chromium on PATH)")
    parser.add_argument("--no-render", action="store_true", help="screenshot the report.html already there")
    args = parser.parse_args(argv)
    html = args.run_dir / HTML_FILE
    try:
        if not args.no_render:
            html = render_report(args.run_dir).html
        elif not html.is_file():
            raise ReportError(f"{html} not found: run `dppt report {args.run_dir}` or drop --no-render.")
        screenshot(html, args.out, size=args.size, chromium=args.chromium)
    except (ReportError, RuntimeError) as err:
        print(f"screenshot_report: {err}", file=sys.stderr)
        return 2
    print(f"screenshot_report: wrote {args.out} ({args.size[0]}x{args.size[1]}) of {html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
