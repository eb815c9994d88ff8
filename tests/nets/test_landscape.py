"""The loss landscape (app/nets/landscape.py) against independent torch computations, on ResNet-20 at tiny grids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from app.cli import main as cli_main
from app.nets import data
from app.nets import landscape as ls
from app.nets.resnet import build
from app.nets.train import load_state_dict_fp16
from app.paths import shipped_weights

torch.set_num_threads(1)


def reference_net(weights: str = "trained") -> nn.Module:
    """ResNet-20 with the shipped weights, loaded here without app.nets.landscape."""
    net = build("resnet20")
    net.load_state_dict(load_state_dict_fp16(shipped_weights("resnet20", weights)))
    return net.eval()


def reference_images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` training images of the shipped runs (batches of 64, seed 0)."""
    stream = data.train_stream(64, seed=0)
    xs, ys = zip(*(next(stream) for _ in range((n + 63) // 64)), strict=True)
    return torch.cat(xs)[:n], torch.cat(ys)[:n]


def reference_loss(net: nn.Module, gates: torch.Tensor, n: int) -> tuple[float, float]:
    """Mean cross-entropy (float64) and accuracy of ``net`` in eval mode on the first ``n`` training images."""
    x, y = reference_images(n)
    with torch.no_grad():
        logits = net(x, gates).double()
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).double().mean())


@pytest.fixture(scope="module")
def surface() -> dict:
    return ls.compute("resnet20", "trained", grid=3, span=1.0, images=24, seed=0, threads=1, progress=False)


def test_origin_is_the_unperturbed_networks_loss(surface: dict) -> None:
    loss, acc = reference_loss(reference_net(), torch.ones(9), 24)
    assert surface["loss"][1][1] == pytest.approx(loss, rel=2e-5)
    assert surface["accuracy"][1][1] == pytest.approx(acc)
    assert surface["slice"]["loss"][2] == surface["loss"][1][1] == pytest.approx(surface["metrics"]["centre_loss"])
    assert surface["bn_statistics"]["source"] == "shipped"


def test_a_grid_point_is_the_loss_of_the_moved_weights() -> None:
    """theta + a d1 + b d2 written into a fresh network by name gives what both backends give."""
    net, gates = ls.load_network("resnet20", "trained")
    d1, d2 = ls.directions(net, seed=5)
    x, y = ls.training_images(24)
    a, b = 0.3, -0.2
    moved = reference_net()
    state = {k: (v + a * d1[k] + b * d2[k] if v.is_floating_point() else v) for k, v in moved.state_dict().items()}
    moved.load_state_dict(state)
    want = reference_loss(moved, gates, 24)
    torch_point = ls.TorchPoint(net, gates, x, y, d1, d2)
    ort_point = ls.OrtPoint(net, gates, x, y, d1, d2, threads=1)
    for point in (torch_point, ort_point):
        got = point(a, b)
        assert got[0] == pytest.approx(want[0], rel=1e-4) and got[1] == pytest.approx(want[1]), point.label
    assert torch_point(0.0, 0.0)[0] == pytest.approx(reference_loss(reference_net(), gates, 24)[0], rel=1e-6)


def test_filter_normalised_directions() -> None:
    net = reference_net()
    d1, d2 = ls.directions(net, seed=0)
    state = net.state_dict()
    floats = [k for k, v in state.items() if v.is_floating_point()]
    assert sorted(d1) == sorted(d2) == sorted(floats)
    for name in floats:
        theta, d = state[name].double(), d1[name].double()
        if name.endswith("weight") and theta.dim() > 1:  # a conv (out, in, kh, kw) or the fc (out, in)
            for j in range(theta.shape[0]):  # one filter (one output channel / fc row) at a time
                assert float(d[j].norm()) == pytest.approx(float(theta[j].norm()), rel=1e-5), (name, j)
            assert not torch.equal(d1[name], d2[name])
        else:  # BN weight, bias, running mean and variance; the fc bias
            assert torch.count_nonzero(d1[name]) == 0 and torch.count_nonzero(d2[name]) == 0, name
    bn_keys = [k for k in floats if ".bn" in k or k.startswith("bn1")]
    assert bn_keys and all(torch.count_nonzero(d1[k]) == 0 for k in bn_keys)


def test_directions_are_deterministic_by_seed() -> None:
    net = reference_net()
    first, again, other = ls.directions(net, 3), ls.directions(net, 3), ls.directions(net, 4)
    for k in first[0]:
        assert torch.equal(first[0][k], again[0][k]) and torch.equal(first[1][k], again[1][k])
    assert not torch.equal(first[0]["conv1.weight"], other[0]["conv1.weight"])
    assert not torch.equal(first[0]["conv1.weight"], first[1]["conv1.weight"])  # d1 and d2 differ


def test_surface_shape_slice_and_metrics(surface: dict) -> None:
    assert surface["coords"] == [-1.0, 0.0, 1.0] and surface["slice"]["alpha"] == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert np.array(surface["loss"]).shape == np.array(surface["accuracy"]).shape == (3, 3)
    assert surface["slice"]["loss"][::2] == surface["loss"][1]  # the slice's grid points are the row b = 0
    assert surface["points"] == 9 + 2
    assert surface["command"].startswith("resviz landscape resnet20 --weights trained --grid 3 --span 1 --images 24")
    comparison = surface["backend"]["comparison"]
    assert comparison["torch_s"] > 0 and comparison["onnxruntime_s"] > 0
    assert comparison["loss_difference"] < 1e-3 * surface["metrics"]["max_loss"]
    assert surface["backend"]["used"] == "onnxruntime" and surface["threads"] == 1
    assert surface["weights_sha256"] and surface["torch_version"] == torch.__version__
    assert surface["data"]["class_counts"] == np.bincount(reference_images(24)[1], minlength=10).tolist()


def test_broken_running_statistics_are_re_estimated() -> None:
    """Where the shipped running statistics give no finite loss they are recomputed (and bn1's is the batch mean)."""
    net, gates = ls.load_network("resnet20", "plain")
    x, y = ls.training_images(16)
    with torch.no_grad():
        net.bn1.running_var.fill_(float("inf"))
        net.bn1.running_mean.fill_(float("inf"))
    record = ls.usable_statistics(net, gates, x, y)
    assert record["source"] == "re-estimated" and "bn1.running_var" in record["non_finite_in_shipped"]
    stream = data.train_stream(64, seed=0)
    with torch.no_grad():
        means = [net.conv1(next(stream)[0]).double().mean(dim=(0, 2, 3)) for _ in range(ls.BN_ESTIMATE_BATCHES)]
    torch.testing.assert_close(net.bn1.running_mean.double(), torch.stack(means).mean(0), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        assert torch.isfinite(net(x, gates)).all()
    fine, g = ls.load_network("resnet20", "plain")
    assert ls.usable_statistics(fine, g, x, y) == {"source": "shipped", "non_finite_in_shipped": []}


def test_cli_writes_the_surface_and_refuses_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "s.json"
    args = ["landscape", "resnet20", "--weights", "plain", "--grid", "3", "--images", "8", "--seed", "2"]
    assert cli_main([*args, "--out", str(out), "--threads", "1", "--quiet", "--compare-repeats", "0"]) == 0
    saved = json.loads(out.read_text())
    assert saved["plain"] is True and saved["gates"] == "all-off" and saved["seed"] == 2
    assert saved["backend"]["comparison"] is None and saved["command"].endswith(f"--out {out}")
    assert str(out) in capsys.readouterr().out
    assert cli_main(["landscape", "resnet20", "--grid", "4", "--out", str(out)]) == 2
    assert "grid must be an odd number" in capsys.readouterr().err
    assert cli_main(["landscape", "resnet18", "--out", str(out)]) == 2
    assert "CIFAR models" in capsys.readouterr().err
    assert cli_main(["landscape", "resnet20", "--threads", "-1", "--out", str(out)]) == 2
    assert "threads must be" in capsys.readouterr().err
    assert cli_main(["landscape", "resnet20", "--images", "0", "--out", str(out)]) == 2
    assert "images must be" in capsys.readouterr().err
