"""What each in-graph reduction of the stats graph costs: the graph rebuilt without one part at a time.

    .venv/bin/python bench/stats_ablation.py [--model resnet50] [--repeat 20]

Prints the median time of the bare forward, the full stats graph, and the stats graph without
each part (exact-zero counts, samples, min/max, sums of squares, block tensors, everything), all
timed in interleaved rounds in one process. Diagnostic only: the app always runs the full graph.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.nets.graphs import MEASURED_KINDS, StatsGraph, TapGraph, strided  # noqa: E402
from app.nets.resnet import build  # noqa: E402
from app.runtime.stats import HIST_SAMPLE  # noqa: E402

PARTS = ("zeros", "sample", "minmax", "sumsq", "tensors")


class PartialStats(StatsGraph):
    """The stats graph with some of its outputs left out."""

    def __init__(self, model: torch.nn.Module, drop: set[str]) -> None:
        self.drop = drop
        super().__init__(model, "running")

    def _outputs(self, recorded: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
        out: list[tuple[str, torch.Tensor]] = []
        for n, t in recorded.items():
            kind = self.kinds[n]
            if kind in MEASURED_KINDS:
                out.append((f"{n}:sum", t.sum((2, 3))))
                if "sumsq" not in self.drop:
                    out.append((f"{n}:sumsq", (t * t).sum((2, 3))))
                if "minmax" not in self.drop:
                    out += [(f"{n}:min", t.amin((2, 3))), (f"{n}:max", t.amax((2, 3)))]
            if "zeros" not in self.drop:
                out.append((f"{n}:zeros", (t == 0).float().sum((1, 2, 3))))
            if "sample" not in self.drop:
                out.append((f"{n}:sample", strided(t, self.sizes[n], HIST_SAMPLE)))
            if kind in ("stem", "block") and "tensors" not in self.drop:
                out.append((n, t))
        return out


def _session(module: torch.nn.Module, args: tuple, names: list[str]) -> ort.InferenceSession:
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, buf, input_names=["image", "gates"], output_names=names, opset_version=17, dynamo=False
        )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])


def main() -> int:
    """Build the variants, time them in interleaved rounds, print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    model = build(args.model).eval()
    size = model.spec.input_size
    image, gates = torch.zeros(1, 3, size, size), torch.ones(model.spec.num_blocks)
    bare = TapGraph(model, "running", taps=False)
    variants = {"bare forward": _session(bare, (image, gates), ["logits"])}
    for label, drop in [("stats graph", set()), *((f"  without {p}", {p}) for p in PARTS)]:
        graph = PartialStats(model, drop)
        variants[label] = _session(graph, (image, gates), graph.output_names)
    everything = PartialStats(model, set(PARTS))
    variants["  sums only"] = _session(everything, (image, gates), everything.output_names)
    feed = {
        "image": np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32),
        "gates": np.ones(model.spec.num_blocks, np.float32),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    for i in range(2 + args.repeat):
        for k, sess in variants.items():
            t = time.perf_counter()
            sess.run(None, feed)
            if i >= 2:
                times[k].append(time.perf_counter() - t)
    base = statistics.median(times["bare forward"])
    print(f"{args.model}, batch 1, median of {args.repeat} interleaved rounds")
    for k, v in times.items():
        m = statistics.median(v)
        print(f"{k:<22} {1e3 * m:7.1f} ms  {m / base:5.2f}x bare")
    return 0


if __name__ == "__main__":
    sys.exit(main())
