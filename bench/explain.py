"""Explanation timings for `make bench`: class activation maps and saliency against a bare forward and torch.

Per model, batch 1, interleaved with the bare ONNX Runtime forward in the same rounds (medians):
Grad-CAM at the last block and at every block (the whole answer as the endpoint builds it, and
the explain graph's run alone at that ``depth``), input-gradient saliency, SmoothGrad with n = 16
in one batched run, and the torch-autograd baseline computing the same Grad-CAM maps (forward
hooks on the blocks, one backward of the class score). ``python bench/explain.py`` runs it alone
and writes bench/results/explain.json.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from app.runtime import explain as ex  # noqa: E402
from app.runtime.registry import ModelRegistry  # noqa: E402

SMOOTHGRAD_N = 16


def torch_gradcam_baseline(name: str, x: np.ndarray, layers: list[str]) -> Callable[[], None]:
    """Grad-CAM at ``layers`` the usual way: forward hooks keep the activations, autograd gives dS/dA."""
    import torch

    from app.nets.resnet import build

    model = build(name)
    model.bn_mode = "running"
    for p in model.parameters():
        p.requires_grad_(False)
    blocks = dict(model.named_blocks())
    xt = torch.from_numpy(x).requires_grad_(True)  # the activations join autograd's graph; the weights do not

    def run() -> None:
        acts: list[torch.Tensor] = []
        hooks = [blocks[lid].register_forward_hook(lambda _m, _i, out: acts.append(out)) for lid in layers]
        try:
            logits = model(xt)
            score = logits[0, int(logits[0].argmax())]
            grads = torch.autograd.grad(score, acts)
            for a, g in zip(acts, grads, strict=True):
                torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1))
        finally:
            for h in hooks:
                h.remove()

    return run


def explain_rows(
    models_dir: Path,
    names: list[str],
    repeat: int,
    with_torch: bool,
    interleaved_ms: Callable,
    ensure: Callable,
) -> list[dict]:
    """One row per model: bare forward, Grad-CAM (one layer, all layers), saliency, SmoothGrad, torch."""
    reg = ModelRegistry(models_dir)
    rows = []
    for name in names:
        ensure(models_dir, name, ("bare", "explain-running"))
        model = reg.get(name, "init")
        size = model.manifest["input_size"]
        x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
        gates = np.ones(model.num_blocks, np.float32)
        bare = reg.session(model, "bare")
        graph = reg.session(model, "explain-running")
        feed = {"image": x, "gates": gates}
        last = model.manifest["blocks"][-1]["id"]
        target = np.full(1, -1, np.int64)

        def graph_at(layer: str) -> Callable[[], object]:
            f = ex.feeds(x, gates, target, ex.depth_of(model.manifest, layer), "gradcam")  # noqa: B023
            return lambda: graph.run(None, f)  # noqa: B023

        def run(method: str, layer: str, **kw: object) -> Callable[[], object]:
            return lambda: ex.explain(reg, model, x, gates, "running", None, method, layer, **kw)  # noqa: B023

        fns: dict[str, Callable[[], object]] = {
            "bare": lambda: bare.run(["logits"], feed),  # noqa: B023
            "graph_one": graph_at(last),
            "graph_all": graph_at(ex.ALL),
            "gradcam_one": run("gradcam", last),
            "gradcam_all": run("gradcam", "all", overlays=False),
            "saliency": run("saliency", "input"),
            "smoothgrad": run("smoothgrad", "input", samples=SMOOTHGRAD_N),
        }
        if with_torch:
            fns["torch_one"] = torch_gradcam_baseline(name, x, [last])
            fns["torch_all"] = torch_gradcam_baseline(name, x, [b["id"] for b in model.manifest["blocks"]])
        t = interleaved_ms(fns, repeat)
        row = {"model": name, **{f"{k}_ms": v for k, v in t.items()}}
        row["gradcam_one_ratio"] = t["gradcam_one"] / t["bare"]
        row["gradcam_all_ratio"] = t["gradcam_all"] / t["bare"]
        row["graph_one_ratio"] = t["graph_one"] / t["bare"]
        row["graph_all_ratio"] = t["graph_all"] / t["bare"]
        row["smoothgrad_over_saliency"] = t["smoothgrad"] / t["saliency"]
        rows.append(row)
    return rows


def print_rows(rows: list[dict]) -> None:
    """The explanation table."""
    print(f"\nexplanations (batch 1; answers as the endpoint builds them; SmoothGrad n = {SMOOTHGRAD_N} in one run)")
    print(
        f"{'model':<10} {'bare ORT':>9} {'graph 1':>8} {'x bare':>7} {'graph all':>10} {'x bare':>7} "
        f"{'Grad-CAM 1':>11} {'x bare':>7} {'all blocks':>11} {'x bare':>7} "
        f"{'saliency':>9} {'SmoothGrad':>11} {'/ sal.':>7} {'torch 1':>9} {'torch all':>10}"
    )
    for r in rows:
        t1 = f"{r['torch_one_ms']:7.1f}ms" if "torch_one_ms" in r else f"{'-':>9}"
        ta = f"{r['torch_all_ms']:8.1f}ms" if "torch_all_ms" in r else f"{'-':>10}"
        print(
            f"{r['model']:<10} {r['bare_ms']:7.1f}ms {r['graph_one_ms']:6.1f}ms {r['graph_one_ratio']:6.2f}x "
            f"{r['graph_all_ms']:8.1f}ms {r['graph_all_ratio']:6.2f}x {r['gradcam_one_ms']:9.1f}ms "
            f"{r['gradcam_one_ratio']:6.2f}x {r['gradcam_all_ms']:9.1f}ms {r['gradcam_all_ratio']:6.2f}x "
            f"{r['saliency_ms']:7.1f}ms {r['smoothgrad_ms']:9.1f}ms {r['smoothgrad_over_saliency']:6.2f}x {t1} {ta}"
        )


def main() -> int:
    """Run the explanation rows alone (the models of `make bench`)."""
    import argparse

    from app.paths import DEFAULT_MODELS_DIR
    from bench.run import ensure, interleaved_ms

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet50,resnet18,resnet20")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--models-dir", default=str(DEFAULT_MODELS_DIR))
    args = ap.parse_args()
    rows = explain_rows(
        Path(args.models_dir), args.models.split(","), args.repeat, not args.no_torch, interleaved_ms, ensure
    )
    print_rows(rows)
    from bench.run import RESULTS

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "explain.json").write_text(json.dumps({"explain": rows, "repeat": args.repeat}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
