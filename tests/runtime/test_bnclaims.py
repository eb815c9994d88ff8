"""The BN-claims reader on real (short) training logs: curves, gradient norms and summary numbers against numpy."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from app.api.lab import training_logs
from app.api.schemas.normalization import BNClaims
from app.nets.train import train
from app.runtime.bnclaims import bn_claims, steps_to_loss

torch.set_num_threads(1)
STEPS = 30


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """resnet20 residual: a 'shipped' BN log, its rerun with gradient norms, and the no-BN run."""
    out = tmp_path_factory.mktemp("bnclaims")
    common = {"plain": False, "steps": STEPS, "batch_size": 16, "out_dir": out, "progress": False}
    shipped = train("resnet20", **common)
    train("resnet20", **common, grad_norm_steps=[0, 10, 29], save_weights=False, tag="bn", compare_log=shipped.log_path)
    train("resnet20", **common, norm="none", grad_norm_steps=[0, 10, 29], save_weights=False)
    return out


def _smooth(values: list[float], window: int = 25) -> np.ndarray:
    """Trailing moving average, computed directly."""
    v = np.asarray(values, float)
    return np.array([v[max(0, i - window + 1) : i + 1].mean() for i in range(len(v))])


def test_runs_carry_the_logs_numbers(logs: Path) -> None:
    out = bn_claims(logs)
    BNClaims.model_validate(json.loads(json.dumps(out)), strict=True)
    assert [(r["model"], r["plain"], r["norm"]) for r in out["runs"]] == [
        ("resnet20", False, "batch"),
        ("resnet20", False, "none"),
    ]
    bn, nobn = out["runs"]
    shipped = json.loads((logs / "resnet20-residual.log.json").read_text())
    rerun = json.loads((logs / "resnet20-residual-bn.log.json").read_text())
    free = json.loads((logs / "resnet20-residual-nobn.log.json").read_text())
    assert bn["loss"] == shipped["loss"] and bn["held_out_accuracy"] == shipped["held_out"]["accuracy"]
    assert bn["reproduces"]["equal"] is True and bn["grad_norms_file"] == "resnet20-residual-bn.log.json"
    assert nobn["loss"] == free["loss"] and nobn["norm"] == "none"
    for row, log in ((bn, rerun), (nobn, free)):
        np.testing.assert_allclose(row["loss_smooth"], _smooth(log["loss"]), rtol=1e-12)
        g = row["grad_norms"]
        assert (
            g["steps"] == [0, 10, 29] and g["first_layer"] == "layer1.0.conv1" and g["last_layer"] == "layer3.2.conv2"
        )
        i, j = log["grad_norms"]["layers"].index("layer1.0.conv1"), log["grad_norms"]["layers"].index("layer3.2.conv2")
        want = [r["norms"][i] / r["norms"][j] for r in log["grad_norms"]["records"]]
        np.testing.assert_allclose(g["first_last_ratio"], want, rtol=1e-12)
        assert g["norms"] == [r["norms"] for r in log["grad_norms"]["records"]]
        assert row["final_train_loss"] == pytest.approx(np.mean(log["loss"][-25:]))
        acc = np.mean(log["accuracy"][-25:])
        assert row["generalisation_gap"] == pytest.approx(acc - log["held_out"]["accuracy"])
        smooth = _smooth(log["loss"])
        below = np.flatnonzero(smooth <= 1.0)
        assert row["steps_to_loss_1"] == (int(below[0]) if below.size else None)
    pair = out["pairs"][0]
    assert pair["summary"]["ratio_step0"] == {
        "bn": bn["grad_norms"]["first_last_ratio"][0],
        "nobn": nobn["grad_norms"]["first_last_ratio"][0],
    }
    assert pair["summary"]["held_out_accuracy"]["bn"] == bn["held_out_accuracy"]
    assert any("ResNet-20" in f for f in out["findings"])
    assert any("freshly generated" in f for f in out["findings"])


def test_the_lab_training_curves_ignore_the_tagged_logs(logs: Path) -> None:
    rows = training_logs(logs)
    assert [(r["model"], r["plain"]) for r in rows] == [("resnet20", False)]


def test_a_diverged_run_reads_as_diverged(tmp_path: Path) -> None:
    common = {"plain": False, "steps": 4, "batch_size": 4, "out_dir": tmp_path, "progress": False}
    train("resnet20", **common, norm="none", lr=1e6, retry_lr=1e5, grad_norm_steps=[0], save_weights=False)
    out = bn_claims(tmp_path)
    (run,) = out["runs"]
    assert run["outcome"] == "diverged" and run["final_train_loss"] is None and run["held_out_accuracy"] is None
    assert run["retried"] and len(run["attempts"]) == 2 and run["steps_to_loss_1"] is None
    assert (
        "diverged at step" in out["findings"][0] and "after a first attempt at peak lr 1000000.0" in out["findings"][0]
    )


def test_steps_to_loss() -> None:
    assert steps_to_loss([2.0, None, 1.5, 0.9, 1.2]) == 3
    assert steps_to_loss([2.0, 1.1]) is None


def test_endpoint_serves_the_shipped_logs(make_client: Callable) -> None:
    body = make_client().get("/api/lab/bn-claims").json()
    BNClaims.model_validate(body, strict=True)
    assert body["command"] == "scripts/make_bn_claims.sh" and body["loss_target"] == 1.0
    for r in body["runs"]:
        assert len(r["loss"]) == r["steps_run"] <= r["steps"] == 400
        if r["norm"] == "batch" and r["reproduces"] is not None:
            assert r["reproduces"]["equal"], f"{r['file']}: the BN rerun does not reproduce the shipped curve"


def test_gradient_state_words() -> None:
    from app.runtime.bnclaims import gradient_state

    assert gradient_state(286.0, 0.37) == "exploding" and gradient_state(8480.0, 26500.0) == "exploding"
    assert gradient_state(0.009, 0.003) == "vanishing"
    assert gradient_state(5.0, 0.03) == "lopsided"
    assert gradient_state(0.63, 0.39) == "healthy" and gradient_state(None, 1.0) is None
