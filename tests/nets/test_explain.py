"""The explain graph and its serving (app.nets.explain, app.runtime.explain) against torch.autograd in float64.

The references hook each layer's module (the stem's ReLU or max pool, every block), take dS/dA with
``torch.autograd.grad`` of the class score S = sum_n logits[n, target] on a float64 copy of the model, and
build each map from the papers' formulas written out here. ResNet-20 runs through the ``exported`` fixture
(its shipped trained weights: BN layers that are not the identity), ResNet-18 at 96 x 96 through a graph
exported here (``make_model``'s BN), both served by ``app.runtime.explain.explain``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from app.nets.explain import ExplainGraph, explain_layers, export_explain_graph
from app.nets.export import build_manifest
from app.nets.resnet import ResNet, build
from app.nets.weights import load_variant
from app.paths import GRAPH_FILES, SERVING_GRAPHS
from app.runtime import explain as ex
from app.runtime.registry import LoadedModel, ModelRegistry
from app.specs import CAM_METHODS, cam_output
from tests.nets.test_backward import GATE_SETTINGS, MIN_MARGIN, kink_margin, make_gates, make_model

RTOL = 1e-4
# Absolute slack, relative to the largest value of the reference map, or for a CAM (a sum over channels that
# may cancel) of the largest sum of its terms' sizes: float32 autograd itself is that far off float64 there.
ATOL = 1e-4
KINDS = ("running", "explain-running", "explain-batch")
# ResNet-18 at 96 x 96 (3 x 3 at layer4, odd sizes on the way): at 64 x 64 one image's batch statistics over the
# 2 x 2 pixels of layer4 are so ill-conditioned that float32 autograd itself is 2e-4 off float64's maps.
SIZE = {"resnet20": 32, "resnet18": 96}
COPIES = {"resnet20": 16, "resnet18": 2}  # SmoothGrad's samples and IG's steps in the comparisons


# --- the references, from the papers ---------------------------------------------------------------


def gradcam(a: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    """Selvaraju et al. 2017: w_k = mean_ij dS/dA_kij, ReLU(sum_k w_k A_k); and the sum of its terms' sizes."""
    w = g.mean(dim=(2, 3), keepdim=True)
    return F.relu((w * a).sum(1)), (w.abs() * a.abs()).sum(1)


def gradcampp(a: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    """Chattopadhay et al. 2018 (exp score): alpha = g^2 / (2 g^2 + sum_ab A_ab g^3), 0/0 read as a denominator 1."""
    den = 2 * g**2 + a.sum(dim=(2, 3), keepdim=True) * g**3
    alpha = g**2 / torch.where(den == 0, torch.ones_like(den), den)
    w = (alpha * F.relu(g)).sum(dim=(2, 3), keepdim=True)
    return F.relu((w * a).sum(1)), (w.abs() * a.abs()).sum(1)


def hirescam(a: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    """Draelos & Carin 2020: ReLU(sum_k g_k * A_k), elementwise."""
    return F.relu((g * a).sum(1)), (g.abs() * a.abs()).sum(1)


def layercam(a: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    """Jiang et al. 2021: ReLU(sum_k ReLU(g_k) * A_k)."""
    return F.relu((F.relu(g) * a).sum(1)), (F.relu(g) * a.abs()).sum(1)


CAMS = {"gradcam": gradcam, "gradcampp": gradcampp, "hirescam": hirescam, "layercam": layercam}


def autograd(model: ResNet, bn: str, x: Tensor, gates: Tensor, target: int) -> tuple[dict, Tensor, Tensor]:
    """(activation and dS/dA of every layer, dS/dx, logits) of ``model`` in float64, by hooks and autograd."""
    m = copy.deepcopy(model).double()
    m.bn_mode = bn
    acts: dict[str, Tensor] = {}
    stem = ("maxpool", m.maxpool) if m.maxpool is not None else ("relu", m.relu)
    modules = [stem, *m.named_blocks()]
    hooks = [mod.register_forward_hook(lambda _m, _i, out, n=n: acts.__setitem__(n, out)) for n, mod in modules]
    try:
        x = x.double().requires_grad_()
        logits = m(x, gates.double())
    finally:
        for h in hooks:
            h.remove()
    score = logits[:, target].sum()
    names = list(acts)
    grads = torch.autograd.grad(score, [acts[n] for n in names] + [x])
    layers = {n: (acts[n].detach(), g) for n, g in zip(names, grads[:-1], strict=True)}
    return layers, grads[-1], logits.detach()


def ref_saliency(grad: Tensor) -> np.ndarray:
    """Simonyan et al. 2014: max over colour channels of |dS/dx|, per image."""
    return grad.abs().amax(dim=1).numpy()


def noisy_copies(x: Tensor, samples: int) -> Tensor:
    """The runtime's SmoothGrad copies: Gaussian noise of 0.15 x the input's range, numpy's seeded Generator."""
    sigma = ex.SIGMA_FRACTION * float(x.max() - x.min())
    noise = np.random.default_rng(ex.NOISE_SEED).standard_normal((samples, *x.shape[1:]), dtype=np.float32)
    return x + torch.from_numpy(noise * np.float32(sigma))


def black(manifest: dict, x: Tensor) -> Tensor:
    """The black image, normalised as the model's preprocessing does."""
    pre = manifest["preprocessing"]
    value = (0 - torch.tensor(pre["mean"])) / torch.tensor(pre["std"])
    return value.view(1, 3, 1, 1).expand_as(x).clone()


# --- fixtures ---------------------------------------------------------------------------------------


class Net:
    """A model as the runtime serves it and the same network for the torch references."""

    def __init__(self, model: ResNet, loaded: LoadedModel, registry: ModelRegistry) -> None:
        self.model, self.loaded, self.registry = model, loaded, registry

    def explain(
        self, x: Tensor, gates: Tensor, bn: str, method: str, layer: str | None = None, target: int | None = None, **kw
    ) -> dict:  # noqa: ANN003
        """The runtime's answer for one image (1, 3, H, W)."""
        return ex.explain(self.registry, self.loaded, x.numpy(), gates.numpy(), bn, target, method, layer, **kw)


@pytest.fixture(scope="module")
def resnet20(exported: Callable, models_dir: Path) -> Net:
    exported("resnet20", "trained", KINDS)
    registry = ModelRegistry(models_dir, intra_op_threads=1)
    model = build("resnet20")
    model.load_state_dict(load_variant("resnet20", "trained", models_dir)[0])
    return Net(model.eval(), registry.get("resnet20", "trained"), registry)


@pytest.fixture(scope="module")
def resnet18(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    """ResNet-18 at a small input size: its explain graphs exported here, served from an in-memory LoadedModel."""
    model = make_model("resnet18")
    tmp = tmp_path_factory.mktemp("explain-r18")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sessions = {}
    for bn in ("running", "batch"):
        path = tmp / f"explain-{bn}.onnx"
        export_explain_graph(model, bn, path, input_size=SIZE["resnet18"])
        sessions[f"explain-{bn}"] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    manifest = build_manifest(model, "test", "test", None)
    yield Net(model, LoadedModel("resnet18", "test", tmp, manifest, sessions), ModelRegistry(tmp))


@pytest.fixture(params=["resnet20", "resnet18"])
def net(request: pytest.FixtureRequest) -> Net:
    return request.getfixturevalue(request.param)


def pick_image(
    net: Net, bn: str, gates: Tensor, batches: Callable[[Tensor], list[Tensor]] = lambda x: [x], seed: int = 0
) -> Tensor:
    """A random image (1, 3, H, W) whose batches (of copies) keep every ReLU input off its kink (see kink_margin)."""
    size = SIZE[net.loaded.name]
    best = (-1.0, seed)
    for s in range(seed, seed + 10):
        x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(s))
        margin = min(kink_margin(net.model, bn, b, gates) for b in batches(x))
        best = max(best, (margin, s), key=lambda b: b[0])
        if margin >= MIN_MARGIN:
            return x
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(best[1]))


def close(got: list, ref: np.ndarray, what: str, scale: np.ndarray | None = None) -> None:
    """The runtime's map (6 significant digits) against the float64 reference; ``scale``: the sizes summed."""
    g = np.asarray(got, np.float64)
    assert g.shape == ref.shape, what
    atol = ATOL * float(np.abs(ref if scale is None else scale).max())
    np.testing.assert_allclose(g, ref, rtol=RTOL, atol=atol, err_msg=what)


# --- the graph --------------------------------------------------------------------------------------


def test_output_names_and_levels() -> None:
    model = build("resnet18")
    graph = ExplainGraph(model, "running")
    layers = explain_layers(model)
    assert layers[0] == "maxpool" and layers[1:] == [p for p, _ in model.named_blocks()]
    cams = [f"cam:{x}:{m}" for x in layers for m in ("gradcam", "gradcampp", "hirescam", "layercam")]
    assert graph.output_names() == ["logits", "target_class", *cams, "grad_image"]
    assert explain_layers(build("resnet20"))[0] == "relu"
    with pytest.raises(ValueError, match="bn mode"):
        ExplainGraph(model, "train")
    assert {"explain-running", "explain-batch"} <= set(SERVING_GRAPHS) and "explain-batch" in GRAPH_FILES


@pytest.mark.parametrize("gates", GATE_SETTINGS)
@pytest.mark.parametrize("bn", ["running", "batch"])
def test_cams_and_saliency_match_autograd(net: Net, bn: str, gates: str) -> None:
    g = make_gates(net.model, gates)
    x = pick_image(net, bn, g, seed=10)
    first = net.explain(x, g, bn, "gradcam", "all")
    t = first["target"]
    layers, grad_x, logits = autograd(net.model, bn, x, g, t)
    assert t == int(logits[0].argmax()) and first["target_source"] == "predicted top-1"
    assert first["probability"] == pytest.approx(float(F.softmax(logits, 1)[0, t]), rel=1e-4)
    assert first["score"] == pytest.approx(float(logits[0, t]), rel=1e-4, abs=1e-5)
    for method, formula in CAMS.items():
        got = first if method == "gradcam" else net.explain(x, g, bn, method, "all")
        assert [e["layer"] for e in got["layers"]] == list(layers)
        for entry in got["layers"]:
            ref, scale = formula(*layers[entry["layer"]])
            close(entry["map"], ref[0].numpy(), f"{method} at {entry['layer']}", scale[0].numpy())
    sal = net.explain(x, g, bn, "saliency")
    assert sal["layer"] == "input" and sal["map_shape"] == list(x.shape[2:])
    close(sal["map"], ref_saliency(grad_x)[0], "saliency")


def test_chosen_target(net: Net) -> None:
    g = make_gates(net.model, "mixed")
    x = pick_image(net, "running", g, seed=20)
    got = net.explain(x, g, "running", "layercam", net.loaded.manifest["blocks"][2]["id"], target=3)
    assert got["target"] == 3 and got["target_source"] == "chosen"
    layers, _, _ = autograd(net.model, "running", x, g, 3)
    ref, scale = layercam(*layers[got["layer"]])
    close(got["map"], ref[0].numpy(), "layercam, class 3", scale[0].numpy())


BATCHED_CASES = [
    *(("resnet20", bn, gates) for bn in ("running", "batch") for gates in GATE_SETTINGS),
    # ResNet-18 (600k ReLU inputs per image at 96 x 96) once: with batch statistics its random test images
    # rarely keep every ReLU input more than 2e-6 rms off 0 (see kink_margin), and where one is nearer, float32
    # rounding (ONNX Runtime's or torch's own) can put it on the other side and route one gradient elsewhere.
    ("resnet18", "running", "mixed"),
]


@pytest.mark.parametrize(("name", "bn", "gates"), BATCHED_CASES)
def test_smoothgrad_and_ig_match_autograd(request: pytest.FixtureRequest, name: str, bn: str, gates: str) -> None:
    """The batched runs against autograd on the same batch (with batch BN, its statistics are the batch's)."""
    net: Net = request.getfixturevalue(name)
    g = make_gates(net.model, gates)
    n, man = COPIES[net.loaded.name], net.loaded.manifest
    x0 = black(man, torch.zeros(1, 3, SIZE[net.loaded.name], SIZE[net.loaded.name]))
    alphas = ((torch.arange(n) + 0.5) / n).view(-1, 1, 1, 1)

    def both(x: Tensor) -> list[Tensor]:
        return [x, noisy_copies(x, n), x0 + alphas * (x - x0), x0]

    x = pick_image(net, bn, g, both, seed=30)
    sg = net.explain(x, g, bn, "smoothgrad", samples=n)
    t = sg["target"]
    copies = noisy_copies(x, n)
    _, grads, _ = autograd(net.model, bn, copies, g, t)
    close(sg["map"], ref_saliency(grads).mean(axis=0), "smoothgrad")
    assert sg["params"]["samples"] == n and sg["params"]["sigma"] == pytest.approx(0.15 * float(x.max() - x.min()))

    ig = net.explain(x, g, bn, "ig", steps=n)
    assert ig["target"] == t
    _, grads, _ = autograd(net.model, bn, x0 + alphas * (x - x0), g, t)
    attr = ((x - x0)[0].double() * grads.mean(dim=0)).numpy()
    close(ig["map"], np.abs(attr).sum(axis=0), "integrated gradients")
    c = ig["params"]["completeness"]
    base = autograd(net.model, bn, x0, g, t)[2][0, t]
    assert c["attribution_sum"] == pytest.approx(float(attr.sum()), rel=1e-4, abs=1e-6)
    assert c["baseline_score"] == pytest.approx(float(base), rel=1e-4, abs=1e-5)
    if bn == "batch":
        assert any("batch statistics" in note for note in sg["notes"] + ig["notes"])


def test_all_equals_each_layer(resnet20: Net) -> None:
    g = make_gates(resnet20.model, "mixed")
    x = pick_image(resnet20, "batch", g, seed=40)
    for method in CAMS:
        every = resnet20.explain(x, g, "batch", method, "all")
        assert "map" not in every and "overlay_png" not in every and every["layer"] == "all"
        assert [e["stage"] for e in every["layers"]] == [0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
        for entry in every["layers"]:
            one = resnet20.explain(x, g, "batch", method, entry["layer"])
            assert len(one["layers"]) == 1 and one["layer"] == entry["layer"]
            for key in ("map_shape", "range", "overlay_png"):
                assert one[key] == entry[key] == one["layers"][0][key], (entry["layer"], key)
            np.testing.assert_array_equal(one["map"], entry["map"], err_msg=entry["layer"])
    bare = resnet20.explain(x, g, "batch", "gradcam", "all", overlays=False)
    assert all(e["overlay_png"] is None for e in bare["layers"])


def test_batched_runs_equal_single_runs(resnet20: Net) -> None:
    """SmoothGrad and IG from the batched run equal the mean over one run per copy (running BN: rows independent)."""
    g = make_gates(resnet20.model, "on")
    x = pick_image(resnet20, "running", g, lambda x: [noisy_copies(x, 16)], seed=50)
    sg = resnet20.explain(x, g, "running", "smoothgrad")
    sess = resnet20.registry.session(resnet20.loaded, "explain-running")
    t = np.array([sg["target"]])

    def single(image: np.ndarray) -> np.ndarray:
        return sess.run(["grad_image"], ex.feeds(image[None], g.numpy(), t, 0))[0][0]

    copies = noisy_copies(x, 16).numpy()
    mean = np.mean([np.abs(single(c)).max(axis=0) for c in copies], axis=0)
    np.testing.assert_allclose(sg["map"], mean, rtol=1e-5, atol=1e-6 * np.abs(mean).max())
    ig = resnet20.explain(x, g, "running", "ig", steps=8)
    x0 = black(resnet20.loaded.manifest, x).numpy()[0]
    path = [x0 + (k + 0.5) / 8 * (x.numpy()[0] - x0) for k in range(8)]
    attr = (x.numpy()[0] - x0) * np.mean([single(p) for p in path], axis=0)
    np.testing.assert_allclose(ig["map"], np.abs(attr).sum(axis=0), rtol=1e-5, atol=1e-6 * np.abs(attr).max())


def test_ig_completeness(resnet20: Net) -> None:
    """The attributions add up to S(x) - S(black) (Sundararajan et al.'s completeness), the closer the more steps."""
    g = make_gates(resnet20.model, "on")
    x = pick_image(resnet20, "running", g, seed=60)
    errors = []
    for steps in (8, 128):
        c = resnet20.explain(x, g, "running", "ig", steps=steps)["params"]["completeness"]
        assert c["score_difference"] == pytest.approx(c["score"] - c["baseline_score"])
        errors.append(c["relative_error"])
    assert errors[1] < 0.02 and errors[1] <= errors[0] + 1e-3, errors


def test_depth_and_method_run_only_what_is_asked_for(resnet20: Net) -> None:
    """Outputs at positions >= depth of the chosen method are those of the full run; every other comes back empty."""
    man = resnet20.loaded.manifest
    sess = resnet20.registry.session(resnet20.loaded, "explain-running")
    names = [o.name for o in sess.get_outputs()]
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    gates, target = np.ones(9, np.float32), np.array([-1, 4])

    def run(depth: int, method: str | None) -> dict[str, np.ndarray]:
        return dict(zip(names, sess.run(None, ex.feeds(x, gates, target, depth, method)), strict=True))

    position = {"grad_image": 0, **{cam_output(lid, "gradcam"): ex.depth_of(man, lid) for lid, _ in ex.layers(man)}}
    full = {m: run(0, m) for m in CAM_METHODS}
    for method in CAM_METHODS:
        for depth in range(len(position) + 1):
            out = run(depth, method)
            for lid, _ in ex.layers(man):
                for m in CAM_METHODS:
                    name = cam_output(lid, m)
                    if m != method:
                        assert out[name].shape[0] == 0, (name, method, depth)
                    elif ex.depth_of(man, lid) >= depth or out[name].shape[0]:  # below depth: empty, or its level ran
                        np.testing.assert_array_equal(out[name], full[m][name], err_msg=f"{name} at depth {depth}")
                        assert out[name].shape == (2, *full[m][name].shape[1:])
            np.testing.assert_array_equal(out["logits"], full[method]["logits"])
            assert (out["grad_image"].shape[0] == 0) == (depth >= 1)
            assert (out[cam_output("relu", method)].shape[0] == 0) == (depth >= 2)
    head = run(len(position) - 1, "hirescam")
    assert [n for n in names if head[n].shape[0] == 2] == ["logits", "target_class", "cam:layer3.2:hirescam"]
    none = run(0, None)
    assert [n for n in names if none[n].shape[0] == 2] == ["logits", "target_class", "grad_image"]
    np.testing.assert_array_equal(none["grad_image"], full["gradcam"]["grad_image"])


def test_export_adds_no_weights(exported: Callable, models_dir: Path) -> None:
    """The explain graphs refer to the model's own weights: the weights file grows by small vectors at most."""
    manifest = exported("resnet20", "trained", KINDS)
    entry = manifest["weights_file"]
    sizes = {k: manifest["graphs"][k]["bytes"] for k in KINDS}
    params = 4 * manifest["params"]
    assert entry["bytes"] < 1.15 * params, (entry["bytes"], params)  # one copy of the weights, BN vectors inline
    assert max(sizes[k] for k in ("explain-running", "explain-batch")) < 0.5 * params, sizes


@pytest.mark.parametrize("method", ["gradcampp", "hirescam"])
def test_non_finite_maps_are_null_with_a_note(resnet20: Net, method: str) -> None:
    """An input that overflows float32 gives NaN maps: sent as null, with a note, never an error."""
    from app.runtime.service import Payload

    x = torch.full((1, 3, 32, 32), 3e38)
    answer = Payload.of(resnet20.explain(x, make_gates(resnet20.model, "on"), "running", method, "all")).json()
    flat = [v for e in answer["layers"] for row in e["map"] for v in row]
    assert None in flat
    assert any(note.startswith("Not finite in") and "maps" in note for note in answer["notes"]), answer["notes"]
    assert answer["probability"] is None or 0 <= answer["probability"] <= 1
    assert all(e["overlay_png"].startswith("data:image/png;base64,") for e in answer["layers"])
