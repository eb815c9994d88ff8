"""Degradation lab: findings from training logs, and Fig. 7 from the analysis engine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from app.api.lab import degradation_verdict, fig7, training_logs
from app.paths import SHIPPED_WEIGHTS_DIR
from app.runtime.registry import ModelRegistry


def _row(depth: int, plain: bool, loss: float) -> dict:
    return {"depth": depth, "plain": plain, "final_train_loss": loss, "held_out_accuracy": 0.5, "steps": 100}


def test_verdict_says_what_the_numbers_show() -> None:
    worse = degradation_verdict([_row(20, True, 0.2), _row(56, True, 1.0), _row(20, False, 0.2), _row(56, False, 0.2)])
    assert "trains worse" in worse[0] and "1.000" in worse[0] and "0.200" in worse[0]
    better = degradation_verdict([_row(20, True, 0.5), _row(56, True, 0.3)])
    assert "does not train worse" in better[0]


def test_shipped_logs_are_complete() -> None:
    rows = training_logs()
    assert rows, "no shipped training logs"
    for r in rows:
        assert len(r["loss"]) == len(r["accuracy"]) == r["steps"]
        assert (SHIPPED_WEIGHTS_DIR / f"{r['model']}-{'plain' if r['plain'] else 'residual'}.pt").exists()
        assert np.isclose(r["final_train_loss"], np.mean(r["loss"][-25:]))


def test_fig7_std_is_the_bn_output_std(tmp_path: Path, exported: Callable, models_dir: Path) -> None:
    exported("resnet20", "trained")
    exported("resnet20", "plain")
    reg = ModelRegistry(models_dir)
    out = fig7(reg, "running", names=("resnet20",))
    assert [s["plain"] for s in out["series"]] == [False, True]
    from app.api.lab import _probe_batch
    from app.nets.resnet import build
    from app.nets.weights import load_variant
    from app.runtime.preprocess import prepare

    manifest = reg.get("resnet20", "trained").manifest
    x = torch.from_numpy(np.stack([prepare(b, manifest["preprocessing"])[0] for b in _probe_batch()]))
    for s in out["series"]:
        assert s["layers"][0] == "bn1" and len(s["layers"]) == 19  # stem + 2 per block, all 3x3
        model = build("resnet20")
        model.load_state_dict(load_variant("resnet20", s["weights"], models_dir)[0])
        model.bn_mode = "running"
        rec: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            model(x, torch.full((9,), 0.0 if s["plain"] else 1.0), rec=rec.__setitem__)
        want = [float(rec[i].double().std(unbiased=False)) for i in s["layers"]]
        np.testing.assert_allclose(s["std"], want, rtol=1e-3)
