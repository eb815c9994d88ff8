"""Browser bench: time from choosing an image to every chart of the visible view drawn, in headless chromium.

Starts the real server (resnet18), opens the Explore page, then
  * cold: clicks a built-in 224x224 sample the server has not seen (fetch, upload, analysis, draw);
  * warm: clicks Analyze again (the server answers from its cache; the page refetches and redraws).
The page sets ``window.__resviz.lastRenderMs`` (action -> prediction, strip and the Activations
view's three charts drawn by Plotly) and fires ``resviz:rendered``. Prints a table, writes
bench/results/browser.json. Run: ``.venv/bin/python bench/browser_bench.py [--runs 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.browser.live_server import CHROMIUM, LiveServer, launch_chromium  # noqa: E402

SAMPLES_224 = ["shapes-224", "grating-224", "checkerboard-224", "rings-224", "noise-224"]
TARGET_MS = 1500.0
RESULTS = REPO / "bench" / "results" / "browser.json"


def wait_render(page, before: int) -> dict:  # noqa: ANN001
    """Wait for the next completed draw; return the page's timing hooks."""
    page.wait_for_function(
        "([n]) => window.__resviz.renders > n || window.__resviz.lastError", arg=[before], timeout=120_000
    )
    hooks = page.evaluate(
        "({ms: window.__resviz.lastRenderMs, server: window.__resviz.serverMs,"
        " renders: window.__resviz.renders, error: window.__resviz.lastError})"
    )
    if hooks["error"]:
        raise RuntimeError(f"the page reported an error: {hooks['error']}")
    return hooks


def timed(page, action) -> dict:  # noqa: ANN001
    """Run ``action`` (a click) and time it until the page has drawn everything."""
    before = page.evaluate("window.__resviz.renders")
    t0 = time.perf_counter()
    action()
    hooks = wait_render(page, before)
    hooks["wall_ms"] = 1e3 * (time.perf_counter() - t0)
    return hooks


def chromium_version() -> str:
    """Version string of Debian's chromium."""
    try:
        return subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=20).stdout.strip()
    except OSError:
        return "unknown"


def run(runs: int, model: str) -> dict:
    """Start the server and the browser, time the runs, return the results."""
    from playwright.sync_api import sync_playwright

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp, LiveServer(Path(tmp), models=(model,)) as server:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            t0 = time.perf_counter()
            page.goto(f"{server.url}/?model={model}&image=shapes-32")  # warm-up: sessions, Plotly, first draw
            first = wait_render(page, 0)
            rows.append(
                {
                    "kind": "first visit",
                    "image": "shapes-32",
                    "ms": first["ms"],
                    "server_ms": first["server"],
                    "wall_ms": 1e3 * (time.perf_counter() - t0),
                }
            )
            for i in range(runs):
                sample = SAMPLES_224[i % len(SAMPLES_224)]
                if i >= len(SAMPLES_224):  # more runs than samples: forget the server's cached answers
                    raise SystemExit(f"--runs is at most {len(SAMPLES_224)} (one unseen sample per cold run)")
                h = timed(page, lambda s=sample: page.click(f'#sample-list [data-sample="{s}"]'))
                rows.append(
                    {"kind": "cold", "image": sample, "ms": h["ms"], "server_ms": h["server"], "wall_ms": h["wall_ms"]}
                )
            for _ in range(runs):
                h = timed(page, lambda: page.click("#analyze"))
                rows.append(
                    {
                        "kind": "warm",
                        "image": SAMPLES_224[runs - 1],
                        "ms": h["ms"],
                        "server_ms": h["server"],
                        "wall_ms": h["wall_ms"],
                    }
                )
            browser.close()
    summary = {}
    for kind in ("cold", "warm"):
        ms = [r["ms"] for r in rows if r["kind"] == kind]
        summary[kind] = {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms), "runs": len(ms)}
    return {
        "model": model,
        "counted": "action -> prediction, architecture strip and the Activations view's 3 charts drawn",
        "target_ms": TARGET_MS,
        "summary": summary,
        "rows": rows,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "chromium": chromium_version()},
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def print_table(result: dict) -> None:
    """The runs and the medians as a plain-text table."""
    print(f"{'run':<12}{'image':<18}{'page ms':>10}{'wall ms':>10}{'server ms':>11}")
    for r in result["rows"]:
        server = f"{r['server_ms']:.0f}" if r["server_ms"] is not None else "-"
        print(f"{r['kind']:<12}{r['image']:<18}{r['ms']:>10.0f}{r['wall_ms']:>10.0f}{server:>11}")
    for kind, s in result["summary"].items():
        verdict = "ok" if s["median_ms"] <= result["target_ms"] else "OVER TARGET"
        print(
            f"median {kind}: {s['median_ms']:.0f} ms (min {s['min_ms']:.0f}, max {s['max_ms']:.0f}, "
            f"target <= {result['target_ms']:.0f} ms: {verdict})"
        )


def main() -> None:
    """Parse arguments, run, print and save."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="cold and warm runs each (at most 5)")
    parser.add_argument("--model", default="resnet18")
    args = parser.parse_args()
    result = run(args.runs, args.model)
    print_table(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
