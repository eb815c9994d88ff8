"""The tables of docs/landscapes.md from the shipped loss landscapes (models/landscapes/*.json, no torch).

.venv/bin/python scripts/landscape_table.py           # print the numbers and the timings
.venv/bin/python scripts/landscape_table.py --write   # put them into docs/landscapes.md between their markers
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.runtime.landscapes import catalogue  # noqa: E402

DOC = ROOT / "docs" / "landscapes.md"
MARKS = {"table": "landscape-table", "timing": "landscape-timing"}


def _g(x: float | None, digits: int = 3) -> str:
    """A number as the table shows it (``overflow`` where the file has none)."""
    if x is None:
        return "overflow"
    return f"{x:.{digits}g}" if abs(x) < 1e5 else f"{x:.2e}"


def table() -> str:
    """One row per shipped surface, in markdown."""
    head = (
        "| network | held-out acc. | centre loss | centre acc. (train) | mean rise r=0.5 | max rise r=0.5 | "
        "mean rise r=1 | max rise r=1 | local minima | eigenvalues of the fit | eig. ratio | BN statistics | "
        "grid, images | wall time |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    for r in catalogue()["surfaces"]:
        name = f"{'plain' if r['plain'] else 'ResNet'}-{r['depth']}"
        eig = ", ".join(_g(v) for v in r["eigenvalues"]) if r["eigenvalues"] else "–"
        ratio = "–" if r["eig_ratio"] is None else _g(r["eig_ratio"], 2)
        held = "–" if r["held_out_accuracy"] is None else f"{100 * r['held_out_accuracy']:.1f}%"
        acc = "–" if r["centre_accuracy"] is None else f"{100 * r['centre_accuracy']:.1f}%"
        rows.append(
            f"| {name} | {held} | {_g(r['centre_loss'])} | {acc} | {_g(r['rise_05']['mean'])} | "
            f"{_g(r['rise_05']['max'])} | {_g(r['rise_10']['mean'])} | {_g(r['rise_10']['max'])} | "
            f"{r['local_minima']} | {eig} | {ratio} | {r['bn_statistics']} | {r['grid']}x{r['grid']}, {r['images']} | "
            f"{r['wall_time_s']:.0f} s |"
        )
    return "\n".join([head, *rows])


def timing() -> str:
    """One row per surface: its cost, and one grid point timed with torch and with ONNX Runtime."""
    head = (
        "| network | points | wall time | s per point | one point, torch | one point, ONNX Runtime | ORT speed-up | "
        "threads |\n|---|---|---|---|---|---|---|---|"
    )
    rows = []
    total = 0.0
    for r in catalogue()["surfaces"]:
        name = f"{'plain' if r['plain'] else 'ResNet'}-{r['depth']}"
        c = (r["backend"] or {}).get("comparison") or {}
        total += r["wall_time_s"] or 0.0
        points = r["grid"] ** 2 + r["grid"] - 1
        rows.append(
            f"| {name} | {points} | {r['wall_time_s']:.0f} s | {r['seconds_per_point']:.3f} s | "
            f"{c.get('torch_s', float('nan')):.3f} s | {c.get('onnxruntime_s', float('nan')):.3f} s | "
            f"{c.get('speedup', float('nan')):.1f}x | {c.get('threads', '–')} |"
        )
    rows.append(f"| all six | | {total:.0f} s ({total / 60:.1f} min) | | | | | |")
    return "\n".join([head, *rows])


def main() -> int:
    """Print the table, or write it into docs/landscapes.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="replace the table in docs/landscapes.md")
    args = parser.parse_args()
    parts = {"table": table(), "timing": timing()}
    if not args.write:
        print("\n\n".join(parts.values()))
        return 0
    doc = DOC.read_text()
    for key, text in parts.items():
        begin, end = f"<!-- {MARKS[key]} -->", f"<!-- /{MARKS[key]} -->"
        start, stop = doc.index(begin) + len(begin), doc.index(end)
        doc = doc[:start] + "\n" + text + "\n" + doc[stop:]
    DOC.write_text(doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
