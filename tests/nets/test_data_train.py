"""The generated data set, the CIFAR-10 loader and the training entry point (short runs only)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from app.nets import data
from app.nets.resnet import build
from app.nets.train import evaluate, load_state_dict_fp16, lr_at, main, train

torch.set_num_threads(1)


# --- generated data -------------------------------------------------------------------------------


def test_classes_are_ten_readable_names():
    assert len(data.CLASSES) == 10
    assert len(set(data.CLASSES)) == 10
    assert all(isinstance(c, str) and c for c in data.CLASSES)


def test_make_batch_is_deterministic_balanced_and_typed():
    x1, y1 = data.make_batch(50, np.random.default_rng(7))
    x2, y2 = data.make_batch(50, np.random.default_rng(7))
    x3, _ = data.make_batch(50, np.random.default_rng(8))
    assert x1.shape == (50, 32, 32, 3) and x1.dtype == np.uint8
    assert y1.shape == (50,) and y1.dtype == np.int64
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    np.testing.assert_array_equal(np.bincount(y1, minlength=10), np.full(10, 5))
    assert data.make_batch(0, np.random.default_rng(0))[0].shape == (0, 32, 32, 3)


def test_classes_differ():
    x, y = data.make_batch(400, np.random.default_rng(0))
    means = np.stack([x[y == c].astype(np.float64).mean(axis=0) for c in range(10)])  # (10, 32, 32, 3)
    # Pairwise distances between class-mean images: no two classes look alike on average.
    dist = np.sqrt(((means[:, None] - means[None]) ** 2).mean(axis=(2, 3, 4)))
    assert dist[~np.eye(10, dtype=bool)].min() > 1.0
    # The images are not flat: every class has real spatial structure.
    grad = np.abs(np.diff(x.astype(np.float64), axis=2)).mean(axis=(1, 2, 3))
    assert all(grad[y == c].mean() > 5 for c in range(10))


def test_train_stream_and_test_set():
    s1, s2 = data.train_stream(20, seed=3), data.train_stream(20, seed=3)
    (a, la), (b, lb) = next(s1), next(s2)
    assert a.shape == (20, 3, 32, 32) and a.dtype == torch.float32 and la.dtype == torch.int64
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(next(s1)[0], a)  # it moves on
    assert abs(float(a.mean())) < 1.5 and 0.3 < float(a.std()) < 3.0  # roughly normalised
    tx, ty = data.test_set(30)
    tx2, _ = data.test_set(30)
    np.testing.assert_array_equal(tx, tx2)
    assert tx.shape == (30, 32, 32, 3) and ty.shape == (30,)
    with pytest.raises(ValueError):
        next(data.train_stream(0, seed=0))


def test_to_tensor_normalises_with_cifar_statistics():
    img = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    img[..., 0] = 255
    t = data.to_tensor(img)
    assert t.shape == (1, 3, 32, 32)
    assert torch.allclose(t[0, 0], torch.tensor((1 - 0.4914) / 0.2470))
    assert torch.allclose(t[0, 1], torch.tensor(-0.4822 / 0.2435))


def test_save_sample_grid(tmp_path: Path):
    from PIL import Image

    out = tmp_path / "grid.png"
    data.save_sample_grid(out, per_class=2)
    with Image.open(out) as im:
        assert im.format == "PNG"
        assert im.height >= 10 * 32 and im.width >= 2 * 32


# --- CIFAR-10 loader --------------------------------------------------------------------------------


def _fake_cifar(directory: Path, n: int = 4) -> None:
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"batch_label": name.encode(),
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, size=n)],
        }
        with (directory / name).open("wb") as f:
            pickle.dump(batch, f)


def test_load_cifar10_reads_python_batches(tmp_path: Path):
    _fake_cifar(tmp_path / "cifar-10-batches-py")
    x_train, y_train, x_test, y_test = data.load_cifar10(tmp_path / "cifar-10-batches-py")
    assert x_train.shape == (20, 32, 32, 3) and x_train.dtype == np.uint8
    assert y_train.shape == (20,) and y_train.dtype == np.int64
    assert x_test.shape == (4, 32, 32, 3) and y_test.shape == (4,)
    # Channel planes become HWC: the first 1024 bytes of a row are the red plane.
    with (tmp_path / "cifar-10-batches-py" / "test_batch").open("rb") as f:
        raw = pickle.load(f)[b"data"]
    np.testing.assert_array_equal(x_test[0, :, :, 0], raw[0, :1024].reshape(32, 32))
    # The parent folder works too.
    assert data.load_cifar10(tmp_path)[0].shape == (20, 32, 32, 3)


def test_load_cifar10_rejects_missing_and_malformed(tmp_path: Path):
    with pytest.raises(ValueError, match="does not exist"):
        data.load_cifar10(tmp_path / "nope")
    with pytest.raises(ValueError, match="lacks"):
        data.load_cifar10(tmp_path)
    _fake_cifar(tmp_path / "c")
    (tmp_path / "c" / "data_batch_3").write_bytes(b"this is not a pickle")
    with pytest.raises(ValueError, match="data_batch_3"):
        data.load_cifar10(tmp_path / "c")
    with (tmp_path / "c" / "data_batch_3").open("wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(ValueError, match="3072"):
        data.load_cifar10(tmp_path / "c")


# --- training ---------------------------------------------------------------------------------------


def test_lr_schedule_warms_up_then_decays():
    lrs = [lr_at(s, 100, 0.1) for s in range(100)]
    peak = int(np.argmax(lrs))
    assert lrs[0] < lrs[peak] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1 :], strict=False))
    assert lrs[-1] < 0.001
    assert peak == 4  # the default: 5 % of the run
    long = [lr_at(s, 100, 0.1, warmup=20) for s in range(100)]
    assert int(np.argmax(long)) == 19 and long[9] == pytest.approx(0.05)


def test_short_residual_run_lowers_loss_and_writes_files(tmp_path: Path):
    res = train("resnet20", plain=False, steps=30, batch_size=32, lr=0.05, out_dir=tmp_path, progress=False)
    assert res.weights_path == tmp_path / "resnet20-residual.pt"
    assert res.log_path == tmp_path / "resnet20-residual.log.json"
    log = json.loads(res.log_path.read_text())
    assert len(log["loss"]) == len(log["accuracy"]) == 30
    assert np.mean(log["loss"][-5:]) < np.mean(log["loss"][:5])
    assert log["gates"] == [1.0] * 9 and log["plain"] is False
    assert log["torch_version"] == torch.__version__ and log["seed"] == 0 and log["batch_size"] == 32
    assert 0.0 <= log["held_out"]["accuracy"] <= 1.0 and log["held_out"]["accuracy"] == res.held_out_accuracy
    sd = torch.load(res.weights_path, weights_only=True)
    assert sd["conv1.weight"].dtype == torch.float16
    assert sd["bn1.num_batches_tracked"].dtype == torch.int64 and int(sd["bn1.num_batches_tracked"]) == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resnet20-residual.log.json", "resnet20-residual.pt"]
    assert res.weights_path.stat().st_mode & 0o044 == 0o044  # readable by others, not mkstemp's 0600


def test_plain_run_logs_zero_gates_and_loads_strictly(tmp_path: Path):
    res = train("resnet20", plain=True, steps=4, batch_size=16, out_dir=tmp_path, seed=1, progress=False)
    log = json.loads(res.log_path.read_text())
    assert log["plain"] is True and log["gates"] == [0.0] * 9
    assert res.weights_path.name == "resnet20-plain.pt"
    sd = load_state_dict_fp16(res.weights_path)
    assert all(v.dtype == torch.float32 for k, v in sd.items() if "num_batches_tracked" not in k)
    model = build("resnet20")
    model.load_state_dict(sd, strict=True)
    x, y = data.test_set(20)
    acc = evaluate(model, torch.zeros(9), x, y)
    assert 0.0 <= acc <= 1.0


def test_training_is_deterministic(tmp_path: Path):
    a = train("resnet20", plain=False, steps=3, batch_size=8, out_dir=tmp_path / "a", progress=False)
    b = train("resnet20", plain=False, steps=3, batch_size=8, out_dir=tmp_path / "b", progress=False)
    assert json.loads(a.log_path.read_text())["loss"] == json.loads(b.log_path.read_text())["loss"]
    sa, sb = torch.load(a.weights_path, weights_only=True), torch.load(b.weights_path, weights_only=True)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model_name": "resnet21"}, "unknown model"),
        ({"model_name": "resnet50"}, "ImageNet"),
        ({"steps": 0}, "steps"),
        ({"steps": -3}, "steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0.0}, "lr"),
        ({"seed": -1}, "seed"),
        ({"warmup": 0}, "warmup"),
        ({"warmup": 6}, "warmup"),
        ({"data": "imagenet"}, "data must be"),
        ({"data": "cifar10:/definitely/not/here"}, "does not exist"),
    ],
)
def test_bad_arguments_raise_and_write_nothing(tmp_path: Path, kwargs: dict, match: str):
    args = {"model_name": "resnet20", "plain": False, "steps": 5, "out_dir": tmp_path / "out", "progress": False}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        train(**args)
    assert not (tmp_path / "out").exists()


def test_malformed_cifar_dir_writes_nothing(tmp_path: Path):
    (tmp_path / "cifar").mkdir()
    (tmp_path / "cifar" / "test_batch").write_bytes(b"junk")
    with pytest.raises(ValueError, match="lacks"):
        train("resnet20", plain=False, steps=2, data=f"cifar10:{tmp_path / 'cifar'}", out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cifar_training_from_fake_batches(tmp_path: Path):
    _fake_cifar(tmp_path / "cifar", n=12)
    res = train(
        "resnet20", plain=False, steps=2, batch_size=8, data=f"cifar10:{tmp_path / 'cifar'}", out_dir=tmp_path / "o"
    )
    log = json.loads(res.log_path.read_text())
    assert log["data"].startswith("cifar10:") and "CIFAR-10" in log["held_out"]["set"]


def test_main_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["resnet20", "--steps", "2", "--plain", "--out", str(tmp_path), "--quiet"]) == 0
    assert (tmp_path / "resnet20-plain.pt").is_file()
    assert "held-out accuracy" in capsys.readouterr().out
    assert main(["resnet999", "--out", str(tmp_path / "x")]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["resnet20", "--steps", "0", "--out", str(tmp_path / "x")]) != 0
    assert main(["resnet20", "--steps", "many"]) != 0
    assert not (tmp_path / "x").exists()


def test_masks_mark_the_object_and_leave_the_images_unchanged():
    x, y = data.make_batch(60, np.random.default_rng(11))
    x2, y2, m = data.make_batch_with_masks(60, np.random.default_rng(11))
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert m.shape == (60, 32, 32) and 0 <= m.min() and m.max() <= 1
    lum = x.astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # (n, 32, 32)
    shapes = [i for i in range(60) if data.CLASSES[y[i]] in ("disc", "square", "triangle")]
    for i in shapes:  # solid shapes: the pixels the mask marks have the object's colour, the rest the background's
        inside, outside = lum[i][m[i] > 0.95], lum[i][m[i] < 0.05]
        assert inside.size > 10 and outside.size > 100
        assert abs(inside.mean() - outside.mean()) > 3 * max(inside.std(), outside.std()) / np.sqrt(inside.size)
        assert 0.02 < m[i].mean() < 0.6
