"""POST /api/models/{name}/normalizations: the real conv output, normalised five ways, against torch in float64."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from app.api.schemas.normalization import Normalizations
from app.nets.resnet import build
from app.nets.weights import load_variant
from app.runtime.preprocess import prepare
from app.runtime.samples import sample_bytes, sample_hashes, samples_of_size
from tests.conftest import png_bytes

torch.set_num_threads(1)
URL = "/api/models/resnet20/normalizations"


@pytest.fixture
def client(exported: Callable, make_client: Callable):  # noqa: ANN201
    exported("resnet20", "trained", kinds=("running",))
    return make_client()


def _conv_output(models_dir: Path, blob: bytes, layer: str, gates: np.ndarray) -> tuple[np.ndarray, dict]:
    """The conv tap of resnet20@trained in torch (BN on running statistics), for the image and the 32 px samples."""
    model = build("resnet20")
    state, _, _ = load_variant("resnet20", "trained", models_dir)
    model.load_state_dict(state)
    model.bn_mode = "running"
    pre = {"resize_shorter": 32, "crop": 32, "mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]}
    x = np.stack([prepare(b, pre)[0] for b in [blob, *(sample_bytes(s) for s in samples_of_size(32))]])
    rec: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        model(torch.from_numpy(x), torch.from_numpy(gates), rec=rec.__setitem__)
    return rec[layer].double().numpy(), {"bn": model.get_submodule(layer.replace("conv", "bn"))}


@pytest.mark.parametrize(
    ("layer", "groups", "gates"),
    [(None, None, "all-on"), ("layer3.2.conv2", "8", "all-off"), ("conv1", "16", "1,0,1,0,0.5,1,0,1,1")],
)
def test_numbers_equal_torch_on_the_real_conv_output(client, models_dir: Path, layer, groups, gates: str) -> None:  # noqa: ANN001
    blob = png_bytes((48, 40), seed=5)
    params = (
        {"weights": "trained", "gates": gates}
        | ({"layer": layer} if layer else {})
        | ({"groups": groups} if groups else {})
    )
    r = client.post(URL, files=[("image", ("a.png", blob, "image/png"))], data=params)
    assert r.status_code == 200, r.text
    body = r.json()
    Normalizations.model_validate(body, strict=True)
    layer = layer or "layer1.0.conv1"
    g = {"all-on": np.ones(9), "all-off": np.zeros(9)}.get(gates)
    g = np.array([float(v) for v in gates.split(",")]) if g is None else g
    x, mods = _conv_output(models_dir, blob, layer, g.astype(np.float32))
    n, c = x.shape[:2]
    assert body["layer"] == layer and body["bn_layer"] == layer.replace("conv", "bn")
    assert body["shape"] == list(x.shape) and body["batch"]["images"] == n == 1 + len(samples_of_size(32))
    groups_n = int(groups) if groups else 4
    assert body["groups"] == groups_n
    t = torch.from_numpy(x)
    bn = mods["bn"]
    want = {
        "batch": F.batch_norm(t, None, None, training=True, eps=1e-5),
        "layer": F.layer_norm(t, t.shape[1:], eps=1e-5),
        "instance": F.instance_norm(t, eps=1e-5),
        "group": F.group_norm(t, groups_n, eps=1e-5),
        "lrn": F.local_response_norm(t, 5, alpha=5e-4, beta=0.75, k=2.0),
        "running": F.batch_norm(t, bn.running_mean.double(), bn.running_var.double(), training=False, eps=bn.eps),
    }
    scale = float(np.abs(x).max())
    for m in body["methods"]:
        y = want[m["id"]][0].numpy()
        assert len(m["channel_mean"]) == len(m["channel_std"]) == c
        np.testing.assert_allclose(m["channel_mean"], y.mean(axis=(1, 2)), atol=2e-4, err_msg=m["id"])
        np.testing.assert_allclose(m["channel_std"], y.std(axis=(1, 2)), atol=2e-4, rtol=1e-3, err_msg=m["id"])
        edges = np.asarray(body["edges"])
        counts, _ = np.histogram(y, bins=edges)  # the same bins: only values within float32 error of an edge move
        assert np.abs(np.asarray(m["histogram"]["counts"]) - counts).sum() <= max(4, y.size // 500), m["id"]
    gamma, beta = bn.weight.detach().double(), bn.bias.detach().double()
    with_affine = want["running"][0] * gamma[:, None, None] + beta[:, None, None]
    running = next(m for m in body["methods"] if m["id"] == "running")
    np.testing.assert_allclose(running["with_affine"]["channel_mean"], with_affine.mean(dim=(1, 2)), atol=2e-4)
    np.testing.assert_allclose(body["before"]["channel_mean"], x[0].mean(axis=(1, 2)), atol=1e-5 * scale + 1e-6)
    by = {m["id"]: m for m in body["methods"]}
    assert by["batch"]["pooled"] == n * x.shape[2] * x.shape[3] and by["instance"]["pooled"] == x.shape[2] * x.shape[3]


def test_a_sample_as_the_image_is_not_counted_twice(client) -> None:  # noqa: ANN001
    sid = next(h for h, f in sample_hashes().items() if f == "shapes-32.png")
    body = client.post(URL, params={"image_id": sid, "weights": "trained"}).json()
    by_bn = client.post(URL, params={"image_id": sid, "weights": "trained", "layer": "layer1.0.bn1"}).json()
    assert by_bn["layer"] == "layer1.0.conv1" and by_bn["methods"] == body["methods"], "a BN's id names its input"
    assert "shapes-32" not in body["batch"]["samples"] and body["batch"]["images"] == len(samples_of_size(32))
    assert body["image_sha256"] == sid


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"layer": "layer9.0.conv1"}, 400, "layer must be a conv layer"),
        ({"layer": "layer1.0"}, 400, "layer must be a conv layer"),
        ({"groups": "3"}, 400, "groups must divide the 16 channels"),
        ({"groups": "0"}, 400, "groups must divide"),
        ({"groups": "-4"}, 400, "groups must divide"),
        ({"groups": "four"}, 400, "groups must be an integer"),
        ({"gates": "1,2"}, 400, "gates"),
        ({"weights": "nope"}, 404, "nope"),
    ],
)
def test_bad_requests_are_explained(client, params: dict, status: int, message: str) -> None:  # noqa: ANN001
    sid = next(iter(sample_hashes()))
    r = client.post(URL, params={"image_id": sid, "weights": "trained", **params})
    assert r.status_code == status and message in r.json()["detail"], r.text


def test_image_count_and_unknown_model(client) -> None:  # noqa: ANN001
    r = client.post(URL, params={"weights": "trained"})
    assert r.status_code == 400 and "exactly one image" in r.json()["detail"]
    files = [("image", (f"{i}.png", png_bytes(seed=i), "image/png")) for i in range(2)]
    r = client.post(URL, files=files, data={"weights": "trained"})
    assert r.status_code == 400
    r = client.post(URL, files=[("image", ("x.png", b"not an image", "image/png"))], data={"weights": "trained"})
    assert r.status_code == 400
    r = client.post("/api/models/resnet21/normalizations", params={"image_id": next(iter(sample_hashes()))})
    assert r.status_code == 404
