"""Training without batch norm: the network really has none, and the recorded gradient norms are autograd's."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from app.nets import data
from app.nets.resnet import build
from app.nets.train import MOMENTUM, WEIGHT_DECAY, conv_layers, lr_at, main, train, warmup_steps

torch.set_num_threads(1)


def test_no_bn_network_has_no_normalisation_and_the_same_convolutions():
    plain_bn, no_bn = build("resnet20", seed=3), build("resnet20", seed=3, norm="none")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in no_bn.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in plain_bn.modules()) == 19
    assert not any(k.startswith("bn") or ".bn" in k for k in no_bn.state_dict())
    assert no_bn.norm == "none" and plain_bn.norm == "batch"
    convs = dict(conv_layers(plain_bn))
    for path, conv in conv_layers(no_bn):  # the same seeded He initialisation, layer by layer
        assert torch.equal(conv.weight, convs[path].weight)
    assert [p for p, _ in conv_layers(no_bn)] == list(convs)
    with pytest.raises(ValueError, match="norm must be"):
        build("resnet20", norm="layer")


def _hand_forward(model: nn.Module, x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    """The CIFAR ResNet without any normalisation, written out with conv2d in float64."""
    sd = {k: v.double() for k, v in model.state_dict().items()}
    h = F.relu(F.conv2d(x, sd["conv1.weight"], padding=1))
    for i, (path, block) in enumerate(model.named_blocks()):
        out = F.relu(F.conv2d(h, sd[f"{path}.conv1.weight"], stride=block.stride, padding=1))
        out = F.conv2d(out, sd[f"{path}.conv2.weight"], padding=1)
        s = h
        if block.stride != 1 or s.shape[1] != out.shape[1]:  # option A: subsample, zero channels both sides
            s = s[:, :, :: block.stride, :: block.stride]
            extra = out.shape[1] - s.shape[1]
            zeros = torch.zeros(s.shape[0], extra // 2, *s.shape[2:], dtype=s.dtype)
            s = torch.cat([zeros, s, torch.zeros(s.shape[0], extra - extra // 2, *s.shape[2:], dtype=s.dtype)], 1)
        h = F.relu(out + gates[i] * s)
    return h.mean(dim=(2, 3)) @ sd["fc.weight"].T + sd["fc.bias"]


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_no_bn_forward_equals_a_hand_computation_without_normalisation(mode: str):
    model = build("resnet20", seed=1, norm="none").double()
    model.train(mode == "train")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 3, 12, 12, generator=gen, dtype=torch.float64)
    gates = torch.rand(9, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        got = model(x, gates)
        want = _hand_forward(model, x, gates)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10, atol=1e-10)
    # ...and batch statistics would have changed it: the BN twin of the same weights answers differently
    with torch.no_grad():
        bn = build("resnet20", seed=1).double().train()
        assert not torch.allclose(bn(x, gates), want)


def _autograd_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, gates: torch.Tensor) -> tuple:
    """Loss, per-conv ||dL/dW|| (float64 autograd) and every parameter's gradient."""
    params = list(model.parameters())
    loss = F.cross_entropy(model(x.double(), gates.double()), y)
    grads = torch.autograd.grad(loss, params)
    by_param = {id(p): g for p, g in zip(params, grads, strict=True)}
    norms = [float(torch.linalg.vector_norm(by_param[id(c.weight)])) for _, c in conv_layers(model)]
    return float(loss.detach()), norms, grads


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_recorded_gradient_norms_equal_autograd_in_float64(tmp_path: Path, norm: str):
    steps, batch, lr = 2, 4, 0.05
    res = train(
        "resnet20",
        plain=False,
        steps=steps,
        batch_size=batch,
        lr=lr,
        out_dir=tmp_path,
        progress=False,
        norm=norm,
        grad_norm_steps=[0, 1],
        save_weights=False,
    )
    log = json.loads(res.log_path.read_text())
    assert res.weights_path is None and sorted(p.name for p in tmp_path.iterdir()) == [res.log_path.name]
    records = log["grad_norms"]["records"]
    assert [r["step"] for r in records] == [0, 1]
    assert log["grad_norms"]["layers"][0] == "conv1" and len(log["grad_norms"]["layers"]) == 19

    # an independent replay in float64: autograd for the gradients, SGD with momentum written out by hand
    model = build("resnet20", 0, norm).double().train()
    stream = data.train_stream(batch, 0)
    gates = torch.ones(9, dtype=torch.float64)
    params = list(model.parameters())
    bufs = [None] * len(params)
    for step in range(steps):
        x, y = next(stream)
        loss, norms, grads = _autograd_norms(model, x, y, gates)
        assert records[step]["loss"] == pytest.approx(loss, rel=1e-4)
        np.testing.assert_allclose(records[step]["norms"], norms, rtol=2e-3 if step else 1e-4)
        rate = lr_at(step, steps, lr, warmup_steps(steps))
        with torch.no_grad():
            for i, (p, g) in enumerate(zip(params, grads, strict=True)):
                d = g + WEIGHT_DECAY * p
                bufs[i] = d.clone() if bufs[i] is None else MOMENTUM * bufs[i] + d
                p -= rate * bufs[i]


def test_divergence_is_recorded_and_retried_once(tmp_path: Path):
    res = train(
        "resnet20", plain=False, steps=4, batch_size=4, lr=1e6, retry_lr=1e5, out_dir=tmp_path, progress=False,
        norm="none", grad_norm_steps=[0, 3], save_weights=False,
    )  # fmt: skip
    text = res.log_path.read_text()
    log = json.loads(text)  # strict JSON: no NaN or Infinity in the file
    assert "NaN" not in text and "Infinity" not in text
    assert res.log_path.name == "resnet20-residual-nobn.log.json" and res.weights_path is None
    assert log["norm"] == "none" and log["retried"] is True and len(log["attempts"]) == 2
    assert [a["peak_lr"] for a in log["attempts"]] == [1e6, 1e5]
    for a in log["attempts"]:
        assert a["outcome"] == "diverged" and a["steps_run"] == a["diverged_at_step"] + 1 < 4
        assert a["loss"][-1] is None and a["final_train_loss"] is None
    assert log["held_out"]["accuracy"] is None and "diverged" in log["held_out"]["note"]
    assert res.held_out_accuracy is None and "retried once at peak lr 100000.0" in log["retry_reason"]
    assert log["lr_schedule"]["peak_lr"] == 1e5
    assert [r["step"] for r in log["grad_norms"]["records"]] == [0]  # step 3 was never reached


def test_a_stuck_run_is_retried_and_a_trained_one_is_not(tmp_path: Path):
    log = json.loads(
        train(
            "resnet20", plain=True, steps=2, batch_size=4, lr=0.05, retry_lr=0.01, out_dir=tmp_path / "a",
            progress=False, norm="none",
        ).log_path.read_text()
    )  # fmt: skip
    first = log["attempts"][0]
    assert first["final_train_loss"] > math.log(10) - 0.1 and first["outcome"] == "stuck"
    assert log["retried"] is True and log["attempts"][1]["peak_lr"] == 0.01
    # a BN run that learns keeps its first attempt
    bn = json.loads(
        train(
            "resnet20", plain=False, steps=40, batch_size=32, lr=0.05, retry_lr=0.01, out_dir=tmp_path / "b",
            progress=False, save_weights=False,
        ).log_path.read_text()
    )  # fmt: skip
    assert bn["retried"] is False and [a["outcome"] for a in bn["attempts"]] == ["trained"]


def test_rerun_reports_that_it_reproduces_a_log(tmp_path: Path):
    first = train("resnet20", plain=True, steps=3, batch_size=4, out_dir=tmp_path, progress=False)
    again = train(
        "resnet20", plain=True, steps=3, batch_size=4, out_dir=tmp_path, progress=False, save_weights=False,
        tag="bn", grad_norm_steps=[0, 2], compare_log=first.log_path,
    )  # fmt: skip
    log = json.loads(again.log_path.read_text())
    assert again.log_path.name == "resnet20-plain-bn.log.json"
    assert log["reproduces"] == {
        "file": "resnet20-plain.log.json",
        "steps_compared": 3,
        "equal": True,
        "max_abs_loss_difference": 0.0,
    }
    assert log["loss"] == json.loads(first.log_path.read_text())["loss"]
    assert "--compare-log" in log["command"] and "--tag bn" in log["command"]


def test_cli_no_bn_writes_the_log_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["resnet20", "--steps", "2", "--batch-size", "4", "--no-bn", "--out", str(tmp_path), "--quiet"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resnet20-residual-nobn.log.json"]
    log = json.loads((tmp_path / "resnet20-residual-nobn.log.json").read_text())
    assert log["norm"] == "none" and log["weights"] is None and "--no-bn" in log["command"]
    assert log["attempts"][-1]["peak_lr"] in (0.05, 0.01)  # --retry-lr defaults to lr / 5
    capsys.readouterr()
    assert main(["resnet20", "--steps", "5", "--grad-norms-at", "0,9", "--out", str(tmp_path / "x")]) == 2
    assert "grad-norm steps" in capsys.readouterr().err
    assert main(["resnet20", "--grad-norms-at", "zero", "--out", str(tmp_path / "x")]) == 2
    assert main(["resnet20", "--steps", "5", "--retry-lr", "0.5", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_resviz_train_no_bn_exports_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from app.cli import main as resviz

    models = tmp_path / "models"
    argv = ["--models-dir", str(models), "train", "resnet20", "--steps", "2", "--batch-size", "4", "--no-bn"]
    assert resviz([*argv, "--out", str(tmp_path / "w"), "--quiet"]) == 0
    assert "no weights to export" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["resnet20-residual-nobn.log.json"]
    assert not models.exists()
