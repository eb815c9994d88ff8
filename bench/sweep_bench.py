"""Depth-sweep bench: how long the gradients view's depth sweep takes to answer on this machine.

Starts a fresh server (nothing cached in memory) on an export cache that has the CIFAR models'
graphs, then times, over HTTP:
  * the probe image's sweep (what the page, the embed and the export draw by default), both BN modes,
    as one request and as the page asks it: one request per depth, one after the other;
  * the same sweep again (the server's row cache);
  * a sweep for an uploaded image, which no precomputed row covers (computed through the ONNX
    gradient graphs), first and second time.
The issue's budget is 10 s for the default sweep. Prints a table and writes bench/results/sweep.json.

    .venv/bin/python bench/sweep_bench.py [--models-dir models]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.browser.live_server import LiveServer  # noqa: E402

DEPTHS = (20, 32, 44, 56, 110)
BUDGET_S = 10.0


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=600) as r:
        return json.loads(r.read())


def _timed(fn) -> tuple[float, object]:  # noqa: ANN001
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _upload(base: str, path: Path) -> str:
    boundary = "resvizbench"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{path.name}"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    req = urllib.request.Request(
        f"{base}/api/images", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())["id"]


def main() -> int:
    """Run the timings and print them."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, default=Path(os.environ.get("RESVIZ_MODELS_DIR", REPO / "models")))
    args = ap.parse_args()
    rows = []
    with (
        tempfile.TemporaryDirectory() as data,
        LiveServer(Path(data), models=("resnet20",), models_dir=args.models_dir) as s,
    ):
        base = s.url
        for bn in ("running", "batch"):
            t, sweep = _timed(lambda bn=bn: _get(f"{base}/api/gradients/depth-sweep?bn={bn}"))
            rows.append((f"probe image, BN {bn}, one request (cold)", t, sweep["source"]))
            t, _ = _timed(lambda bn=bn: _get(f"{base}/api/gradients/depth-sweep?bn={bn}"))
            rows.append((f"probe image, BN {bn}, again", t, "row cache"))
        s.stop()
    with (
        tempfile.TemporaryDirectory() as data,
        LiveServer(Path(data), models=("resnet20",), models_dir=args.models_dir) as s,
    ):
        base = s.url
        t0 = time.perf_counter()
        sources = {_get(f"{base}/api/gradients/depth-sweep?bn=running&depths={d}")["source"] for d in DEPTHS}
        rows.append(
            (
                "probe image, BN running, per depth as the page asks (cold)",
                time.perf_counter() - t0,
                "+".join(sorted(sources)),
            )
        )
        image = _upload(base, REPO / "static" / "samples" / "set-square.png")
        for label in ("uploaded image, BN running (cold: computed)", "uploaded image, BN running, again"):
            t, sweep = _timed(lambda: _get(f"{base}/api/gradients/depth-sweep?bn=running&image_id={image}"))
            rows.append((label, t, sweep["source"]))
    width = max(len(r[0]) for r in rows)
    print(f"{'case':<{width}}  seconds  answered from")
    for name, t, src in rows:
        print(f"{name:<{width}}  {t:7.2f}  {src}")
    default = [t for name, t, _ in rows if name.startswith("probe image") and "cold" in name]
    verdict = "met" if max(default) <= BUDGET_S else "MISSED"
    print(f"budget {BUDGET_S:.0f} s for the default sweep: {verdict} (worst {max(default):.2f} s)")
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "rows": [dict(zip(("case", "seconds", "source"), r, strict=True)) for r in rows],
            },
            indent=1,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
