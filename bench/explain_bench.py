"""The explain graph against a bare ONNX Runtime forward: graph runs at each depth and whole answers.

``python bench/explain_bench.py [--models resnet50] [--repeat 7] [--threads 1] [--bn running]`` exports
what is missing (init weights), then times in interleaved rounds, batch 1: the bare forward; the explain
graph with ``depth`` for every CAM and the image gradient (0), every CAM (1), the first block, the first
block of the last stage and the last block; and the answers ``app.runtime.explain.explain`` makes (Grad-CAM
at the last block, all-layer CAMs without overlays, saliency). Prints each median and its ratio to the bare
forward's; writes bench/results/explain.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.runtime import explain as ex  # noqa: E402
from app.runtime.registry import ModelRegistry  # noqa: E402
from bench.run import DEFAULT_MODELS_DIR, RESULTS, ensure, interleaved_ms  # noqa: E402


def rows(models_dir: Path, name: str, bn: str, threads: int, repeat: int) -> dict:
    """Median milliseconds and ratios to the bare forward for one model."""
    ensure(models_dir, name, ("running", "bare", f"explain-{bn}"))
    reg = ModelRegistry(models_dir, intra_op_threads=threads)
    model = reg.get(name, "init")
    man = model.manifest
    size = man["input_size"]
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    gates = np.ones(model.num_blocks, np.float32)
    bare = reg.session(model, "bare")
    sess = reg.session(model, f"explain-{bn}")
    blocks = [b["id"] for b in man["blocks"]]
    last_stage_first = next(b["id"] for b in man["blocks"] if b["stage"] == man["blocks"][-1]["stage"])
    depths = {"all + image": 0, "all CAMs": 1, blocks[0]: ex.depth_of(man, blocks[0])}
    depths[last_stage_first] = ex.depth_of(man, last_stage_first)
    depths[blocks[-1]] = ex.depth_of(man, blocks[-1])

    def graph(depth: int):  # noqa: ANN202
        feeds = {"image": x, "gates": gates, "target": np.array([-1], np.int64), "depth": np.array(depth, np.int64)}
        return lambda: sess.run(None, feeds)

    def answer(method: str, layer: str | None, **kw: object):  # noqa: ANN202
        return lambda: ex.explain(reg, model, x, gates, bn, None, method, layer, **kw)

    fns = {"bare": lambda: bare.run(["logits"], {"image": x, "gates": gates})}
    fns.update({f"graph depth={d} ({label})": graph(d) for label, d in depths.items()})
    fns[f"answer gradcam {blocks[-1]}"] = answer("gradcam", None)
    fns["answer gradcam all (no overlays)"] = answer("gradcam", "all", overlays=False)
    fns["answer saliency"] = answer("saliency", None)
    t = interleaved_ms(fns, repeat)
    return {"model": name, "bn": bn, "threads": threads, "ms": t, "ratio": {k: v / t["bare"] for k, v in t.items()}}


def main() -> int:
    """Time, print, write JSON."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", default="resnet50")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="ORT intra-op threads")
    ap.add_argument("--bn", default="running", choices=["running", "batch"])
    ap.add_argument("--models-dir", default=str(DEFAULT_MODELS_DIR))
    args = ap.parse_args()
    out = [rows(Path(args.models_dir), n, args.bn, args.threads, args.repeat) for n in args.models.split(",")]
    for r in out:
        print(f"\n{r['model']}, bn {r['bn']}, batch 1, {r['threads']} thread(s), median of {args.repeat}")
        for k, ms in r["ms"].items():
            print(f"  {k:<44} {ms:8.1f} ms  {r['ratio'][k]:5.2f}x bare")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "explain.json").write_text(json.dumps(out, indent=2))
    print(f"\nwrote {RESULTS / 'explain.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
