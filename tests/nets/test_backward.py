"""The hand-written backward (app.nets.backward) against torch.autograd, in torch and in ONNX Runtime."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from app.nets.backward import GradientGraph, export_gradient_graph
from app.nets.backward_ops import (
    batch_gemm,
    conv_input_grad,
    gram_sumsq,
    im2col,
    maxpool_backward,
    zero_pad_backward,
    zero_pad_forward,
)
from app.nets.resnet import ResNet, ZeroPadShortcut, build
from app.runtime.gradients import finish_norms

RTOL = 1e-4
ATOL_SCALE = 1e-7  # absolute slack, relative to the largest gradient norm of the model
GATE_SETTINGS = ("on", "off", "mixed")
MIN_MARGIN = 2e-6  # smallest |ReLU input| / rms accepted for test inputs, see kink_margin


def make_model(name: str, seed: int = 0) -> ResNet:
    """A seeded model whose BN layers are not the identity."""
    model = build(name, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0, generator=gen)
                m.running_mean.normal_(generator=gen).mul_(0.1)
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.normal_(generator=gen).mul_(0.1)
    return model


def make_gates(model: ResNet, setting: str) -> Tensor:
    """Gate vector: all 1, all 0, or cycling 1 / 0 / 0.5."""
    n = model.spec.num_blocks
    if setting == "on":
        return torch.ones(n)
    if setting == "off":
        return torch.zeros(n)
    return torch.tensor([1.0, 0.0, 0.5] * n)[:n]


def make_inputs(model: ResNet, batch: int, size: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A random image batch and random target classes."""
    gen = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 3, size, size, generator=gen)
    target = torch.randint(0, model.spec.num_classes, (batch,), generator=gen)
    return image, target


def kink_margin(model: ResNet, bn_mode: str, image: Tensor, gates: Tensor) -> float:
    """Smallest |ReLU input| / rms over every ReLU of the net, computed in float64.

    ReLU is not differentiable at 0: where a pre-activation sits within rounding error of 0, ONNX
    Runtime's float32 forward can land on the other side than torch's and route one element's
    gradient differently, a discrepancy of the arithmetic, not of the backward (seen on resnet20:
    margins below 5e-7 gave errors up to 1e-2; margins above 1e-6 never more than 2e-5). Inputs with
    a comfortable margin keep such flips out of the comparisons.
    """
    m64 = copy.deepcopy(model).double()
    m64.bn_mode = bn_mode
    taps: dict[str, Tensor] = {}
    with torch.no_grad():
        m64(image.double(), gates.double(), rec=taps.__setitem__)
    relu_in = [taps["bn1"]]
    prev = "maxpool" if model.maxpool is not None else "relu"
    for i, (path, block) in enumerate(m64.named_blocks()):
        depth = 3 if hasattr(block, "conv3") else 2
        relu_in += [taps[f"{path}.bn{k}"] for k in range(1, depth)]
        if block.downsample is None:
            shortcut = taps[prev]
        elif isinstance(block.downsample, ZeroPadShortcut):
            shortcut = taps[f"{path}.downsample"]
        else:
            shortcut = taps[f"{path}.downsample.1"]
        relu_in.append(taps[f"{path}.bn{depth}"] + gates[i].double() * shortcut)
        prev = path
    return min((v.abs().min() / v.square().mean().sqrt()).item() for v in relu_in)


def pick_inputs(
    model: ResNet, bn_mode: str, gates: Tensor, batch: int, size: int, seed: int = 0, tries: int = 10
) -> tuple[Tensor, Tensor]:
    """Inputs of the first seed whose kink margin is >= MIN_MARGIN (else the best of ``tries`` seeds)."""
    best: tuple[float, int] = (-1.0, seed)
    for s in range(seed, seed + tries):
        margin = kink_margin(model, bn_mode, make_inputs(model, batch, size, s)[0], gates)
        best = max(best, (margin, s))
        if margin >= MIN_MARGIN:
            break
    return make_inputs(model, batch, size, best[1])


def reference(model: ResNet, bn_mode: str, image: Tensor, gates: Tensor, target: Tensor) -> dict[str, np.ndarray]:
    """Every GradientGraph output computed with torch.autograd (norms taken in float64)."""
    taps: dict[str, Tensor] = {}
    old_mode = model.bn_mode
    model.bn_mode = bn_mode
    try:
        logits = model(image, gates, rec=taps.__setitem__)
    finally:
        model.bn_mode = old_mode
    loss = F.cross_entropy(logits, target)
    stem = "maxpool" if model.maxpool is not None else "relu"
    blocks = model.named_blocks()
    modules = dict(model.named_modules())
    convs = [p for p, m in modules.items() if isinstance(m, nn.Conv2d)]
    bns = [p for p, m in modules.items() if isinstance(m, nn.BatchNorm2d)]
    tap_names = [stem, *(p for p, _ in blocks), *convs]
    params = [modules[p].weight for p in convs] + [modules[p].weight for p in bns] + [modules[p].bias for p in bns]
    params.append(model.fc.weight)
    grads = torch.autograd.grad(loss, [logits, *(taps[n] for n in tap_names), *params])
    g_logits, g_taps, g_params = grads[0], grads[1 : 1 + len(tap_names)], grads[1 + len(tap_names) :]
    tap_grad = dict(zip(tap_names, g_taps, strict=True))

    def norm(t: Tensor) -> np.ndarray:
        return np.asarray(t.detach().double().norm().item())

    ref = {"loss": loss.detach().numpy(), "logits": logits.detach().numpy()}
    ref["grad_act:fc"] = norm(g_logits)
    ref["grad_w:fc"] = norm(g_params[-1])
    prev = stem
    for path, _ in blocks:
        ref[f"grad_in:{path}"] = norm(tap_grad[prev])
        ref[f"grad_out:{path}"] = norm(tap_grad[path])
        prev = path
    n_conv, n_bn = len(convs), len(bns)
    for i, p in enumerate(convs):
        ref[f"grad_act:{p}"] = norm(tap_grad[p])
        ref[f"grad_w:{p}"] = norm(g_params[i])
    for i, p in enumerate(bns):
        ref[f"grad_w:{p}"] = norm(g_params[n_conv + i])
        ref[f"grad_b:{p}"] = norm(g_params[n_conv + n_bn + i])
    return ref


def exact(model: ResNet, bn_mode: str, image: Tensor, gates: Tensor, target: Tensor) -> dict[str, np.ndarray]:
    """``reference`` in float64: what the float32 ONNX graph is held to.

    Float32 autograd is no exact reference itself: its summation order differs from ONNX
    Runtime's and changes with torch's thread count, and on deep nets the two drift apart by up to
    1e-2 on single small norms (ResNet-152's BN gamma gradients, measured) while each stays within
    1e-4 of the float64 value.
    """
    return reference(copy.deepcopy(model).double(), bn_mode, image.double(), gates.double(), target)


def finished(outs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Loss, logits and the norms the runtime makes of a gradient graph's float32 outputs."""
    for name, o in outs.items():
        assert o.dtype == np.float32, name
        assert np.all(np.isfinite(o)), name
        if name.startswith("grad_"):  # parts of a squared norm (Gram parts may be < 0); their total is not
            assert np.sum(o, dtype=np.float64) >= 0, name
    return {"loss": outs["loss"], "logits": outs["logits"], **{k: np.asarray(v) for k, v in finish_norms(outs).items()}}


def eager(model: ResNet, bn_mode: str, image: Tensor, gates: Tensor, target: Tensor) -> dict[str, np.ndarray]:
    """GradientGraph outputs run in torch, finished as the runtime does."""
    graph = GradientGraph(model, bn_mode)
    with torch.no_grad():
        outs = graph(image, gates, target)
    return finished({n: o.numpy() for n, o in zip(graph.output_names(), outs, strict=True)})


_SESSIONS: dict[tuple[int, str, int], tuple[ResNet, ort.InferenceSession, list[str]]] = {}


def session(model: ResNet, bn_mode: str, size: int, tmp: Path) -> tuple[ort.InferenceSession, list[str]]:
    """Export (once per model, mode and size) and load the gradient graph in ONNX Runtime."""
    key = (id(model), bn_mode, size)  # the model is kept in the value, so its id stays unique
    if key not in _SESSIONS:
        path = tmp / f"{model.spec.name}-{id(model)}-{bn_mode}-{size}.onnx"
        names = export_gradient_graph(model, bn_mode, path, input_size=size)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        _SESSIONS[key] = (model, ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]), names)
    _, sess, names = _SESSIONS[key]
    return sess, names


def onnx_run(sess: ort.InferenceSession, names: list[str], image: Tensor, gates: Tensor, target: Tensor) -> dict:
    """Gradient graph outputs run in ONNX Runtime, finished as the runtime does."""
    outs = sess.run(None, {"image": image.numpy(), "gates": gates.numpy(), "target": target.numpy()})
    assert [o.name for o in sess.get_outputs()] == names
    return finished(dict(zip(names, outs, strict=True)))


def compare(got: dict[str, np.ndarray], ref: dict[str, np.ndarray], rtol: float = RTOL) -> float:
    """Assert every output matches the reference; return the largest relative error seen.

    Scalars (loss, norms) are compared one by one, with an absolute slack of ATOL_SCALE times the
    largest gradient norm for norms that are (nearly) 0; the logits as a whole, relative to their
    largest magnitude (a logit near 0 has no meaningful relative error of its own).
    """
    assert set(got) == set(ref), set(got) ^ set(ref)
    scale = max(float(v) for k, v in ref.items() if k.startswith("grad_"))
    assert scale > 0
    worst = 0.0
    for name, r in ref.items():
        g = got[name]
        assert g.shape == r.shape, name
        assert np.all(np.isfinite(g)), name
        if r.ndim == 0:
            np.testing.assert_allclose(g, r, rtol=rtol, atol=ATOL_SCALE * scale, err_msg=name)
            if r != 0:
                worst = max(worst, abs(float(g) - float(r)) / abs(float(r)))
        else:
            rel = float(np.max(np.abs(g - r)) / np.max(np.abs(r)))
            assert rel <= rtol, f"{name}: max |error| / max |value| = {rel:.2e} > {rtol:.0e}"
            worst = max(worst, rel)
    return worst


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("grad-onnx")
    _SESSIONS.clear()  # let the sessions (and their models) go with this module's tests


@pytest.fixture(scope="module")
def resnet20() -> ResNet:
    return make_model("resnet20")


@pytest.fixture(scope="module")
def resnet18() -> ResNet:
    return make_model("resnet18")


# --- pieces ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "s", "p", "size"),
    [(3, 1, 1, 8), (3, 2, 1, 8), (3, 2, 1, 7), (1, 1, 0, 6), (1, 2, 0, 8), (1, 2, 0, 7), (7, 2, 3, 16), (7, 2, 3, 15)],
)
def test_conv_grads_match_autograd(k: int, s: int, p: int, size: int) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, k, s, p, bias=False)
    x = torch.randn(2, 3, size, size)
    dz = torch.randn_like(conv(x))
    x64 = x.double().requires_grad_()
    w64 = conv.weight.detach().double().requires_grad_()
    z64 = F.conv2d(x64, w64, None, s, p)
    dx_ref, dw_ref = torch.autograd.grad(z64, [x64, w64], dz.double())  # float64 autograd
    with torch.no_grad():
        dx = conv_input_grad(conv, dz, x)
        dw = batch_gemm(dz, im2col(conv, x), torch.ones(1, 2)).view_as(conv.weight)  # (Cout, Cin*k*k)
    assert dx.shape == x.shape and dw.shape == conv.weight.shape
    torch.testing.assert_close(dx.double(), dx_ref, rtol=1e-5, atol=1e-6 * dx_ref.abs().max().item())
    torch.testing.assert_close(dw.double(), dw_ref, rtol=1e-5, atol=1e-6 * dw_ref.abs().max().item())


@pytest.mark.parametrize("batch", [1, 3])
def test_gram_norm_matches_the_weight_gradient(batch: int) -> None:
    """||sum_n,p a b^T||^2 from Gram matrices equals the squared norm of the product (float64)."""
    gen = torch.Generator().manual_seed(batch)
    a = torch.randn(batch, 64, 3, 3, generator=gen)  # like dL/dy of a late stage: few pixels
    b = F.relu(torch.randn(batch, 1152, 3, 3, generator=gen))  # an im2col matrix, >= 0
    parts = gram_sumsq(a, b)
    assert parts.shape == (batch * 9,)
    g = torch.einsum("nip,njp->ij", a.double().flatten(2), b.double().flatten(2))  # (64, 1152)
    np.testing.assert_allclose(parts.double().sum().item(), g.square().sum().item(), rtol=1e-5)


def test_finished_norms_are_float64_roots_of_the_totals() -> None:
    parts = {
        "loss": np.float32(1.0),
        "grad_w:a": np.array([3.0, 4.0, -1e-9], np.float32),
        "grad_in:b": np.zeros(3, np.float32),
    }
    parts["grad_out:c"] = np.array([1e-9, -2e-9], np.float32)  # Gram parts can total just below 0
    norms = finish_norms(parts)
    assert set(norms) == {"grad_w:a", "grad_in:b", "grad_out:c"}
    assert norms["grad_w:a"] == pytest.approx(np.sqrt(7.0), rel=1e-7)
    assert norms["grad_in:b"] == 0.0 and norms["grad_out:c"] == 0.0


@pytest.mark.parametrize("size", [8, 7])
def test_maxpool_backward_matches_autograd_with_ties(size: int) -> None:
    torch.manual_seed(0)
    pool = nn.MaxPool2d(3, 2, 1)
    x = F.relu(torch.randn(2, 4, size, size)).requires_grad_()  # half zeros: many tied windows
    y = pool(x)
    dy = torch.randn_like(y)
    (ref,) = torch.autograd.grad(y, x, dy)
    torch.testing.assert_close(maxpool_backward(pool, x.detach(), dy), ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("cin", "cout", "stride", "size"), [(16, 32, 2, 8), (16, 32, 2, 7), (4, 6, 1, 5)])
def test_zero_pad_shortcut_forward_and_backward(cin: int, cout: int, stride: int, size: int) -> None:
    torch.manual_seed(0)
    ds = ZeroPadShortcut(cin, cout, stride)
    x = torch.randn(2, cin, size, size, requires_grad=True)
    s = ds(x)
    assert torch.equal(zero_pad_forward(ds, x.detach()), s.detach())
    ds_out = torch.randn_like(s)
    (ref,) = torch.autograd.grad(s, x, ds_out)
    assert torch.equal(zero_pad_backward(ds, ds_out, x.detach()), ref)


def test_bad_bn_mode_is_refused(resnet20: ResNet) -> None:
    with pytest.raises(ValueError, match="bn mode"):
        GradientGraph(resnet20, "train")


@pytest.mark.parametrize("name", ["resnet20", "resnet18", "resnet50"])
def test_output_names(name: str) -> None:
    model = build(name)
    names = GradientGraph(model, "running").output_names()
    assert names[:2] == ["loss", "logits"]
    assert len(names) == len(set(names))
    modules = dict(model.named_modules())
    convs = [p for p, m in modules.items() if isinstance(m, nn.Conv2d)]
    bns = [p for p, m in modules.items() if isinstance(m, nn.BatchNorm2d)]
    expected = {"loss", "logits", "grad_act:fc", "grad_w:fc"}
    expected |= {f"grad_{k}:{p}" for p, _ in model.named_blocks() for k in ("in", "out")}
    expected |= {f"grad_{k}:{p}" for p in convs for k in ("act", "w")}
    expected |= {f"grad_{k}:{p}" for p in bns for k in ("w", "b")}
    assert set(names) == expected


# --- whole networks ----------------------------------------------------------------------------


@pytest.mark.parametrize("gates", GATE_SETTINGS)
@pytest.mark.parametrize("bn_mode", ["running", "batch"])
def test_resnet20_eager_matches_autograd(resnet20: ResNet, bn_mode: str, gates: str) -> None:
    g = make_gates(resnet20, gates)
    image, target = pick_inputs(resnet20, bn_mode, g, 2, 32)
    compare(eager(resnet20, bn_mode, image, g, target), reference(resnet20, bn_mode, image, g, target))


@pytest.mark.parametrize("gates", GATE_SETTINGS)
@pytest.mark.parametrize("bn_mode", ["running", "batch"])
def test_resnet20_onnx_matches_autograd(resnet20: ResNet, tmp: Path, bn_mode: str, gates: str) -> None:
    sess, names = session(resnet20, bn_mode, 32, tmp)
    g = make_gates(resnet20, gates)
    image, target = pick_inputs(resnet20, bn_mode, g, 2, 32, seed=100)
    compare(onnx_run(sess, names, image, g, target), exact(resnet20, bn_mode, image, g, target))


def test_export_is_one_file_and_leaves_the_model_alone(tmp_path: Path) -> None:
    model = make_model("resnet20")
    model.layer2.train()  # a mixed state, to be kept as it is
    before = [m.training for m in model.modules()]
    names = export_gradient_graph(model, "running", tmp_path / "g.onnx")
    assert [m.training for m in model.modules()] == before
    assert [p.name for p in tmp_path.iterdir()] == ["g.onnx"]  # weights inside, no external data
    sess = ort.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image", "gates", "target"]
    image, gates, target = sess.get_inputs()
    assert isinstance(image.shape[0], str) and image.shape[1:] == [3, 32, 32]
    assert isinstance(target.shape[0], str) and gates.shape == [model.spec.num_blocks]
    assert [o.name for o in sess.get_outputs()] == names


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_batch_axis_is_dynamic(resnet20: ResNet, tmp: Path, batch: int) -> None:
    sess, names = session(resnet20, "batch", 32, tmp)  # traced at batch 2
    g = make_gates(resnet20, "mixed")
    image, target = pick_inputs(resnet20, "batch", g, batch, 32, seed=200)
    got = onnx_run(sess, names, image, g, target)
    assert got["logits"].shape == (batch, 10)
    compare(got, exact(resnet20, "batch", image, g, target))


def test_onnx_batch_axis_is_dynamic_with_maxpool(resnet18: ResNet, tmp: Path) -> None:
    """The stem's max-pool indices stay per image at another batch size than the traced one."""
    sess, names = session(resnet18, "running", 64, tmp)
    g = make_gates(resnet18, "mixed")
    image, target = pick_inputs(resnet18, "running", g, 3, 64, seed=700)
    compare(onnx_run(sess, names, image, g, target), exact(resnet18, "running", image, g, target))


def test_resnet20_odd_input_size(tmp: Path) -> None:
    """30x30 input: 15x15 then 8x8 feature maps exercise the odd-size paths (no output padding)."""
    model = make_model("resnet20", seed=3)
    g = make_gates(model, "mixed")
    image, target = pick_inputs(model, "batch", g, 2, 30, seed=300)
    compare(eager(model, "batch", image, g, target), reference(model, "batch", image, g, target))
    sess, names = session(model, "batch", 30, tmp)
    compare(onnx_run(sess, names, image, g, target), exact(model, "batch", image, g, target))


@pytest.mark.parametrize("bn_mode", ["running", "batch"])
def test_resnet18_small_input(resnet18: ResNet, tmp: Path, bn_mode: str) -> None:
    g = make_gates(resnet18, "mixed")
    image, target = pick_inputs(resnet18, bn_mode, g, 2, 64, seed=400)
    compare(eager(resnet18, bn_mode, image, g, target), reference(resnet18, bn_mode, image, g, target))
    sess, names = session(resnet18, bn_mode, 64, tmp)
    compare(onnx_run(sess, names, image, g, target), exact(resnet18, bn_mode, image, g, target))


@pytest.mark.slow
@pytest.mark.parametrize("bn_mode", ["running", "batch"])
def test_resnet56(tmp: Path, bn_mode: str) -> None:
    """Every gate setting in torch; in ONNX Runtime all but the chaotic plain/mixed batch-BN nets.

    With batch statistics (batch of 2) the 56-layer plain and mixed nets at initialisation are
    chaotic: gradient norms reach ~5e3 and float32 autograd itself differs from float64 autograd
    by ~10%, so any other float32 implementation (ONNX Runtime's kernels) lands as far off. The
    torch-eager graph shares autograd's forward bit for bit and still matches there.
    """
    model = make_model("resnet56")
    for gates in GATE_SETTINGS:
        g = make_gates(model, gates)
        image, target = pick_inputs(model, bn_mode, g, 2, 32, seed=500)
        compare(eager(model, bn_mode, image, g, target), reference(model, bn_mode, image, g, target))
        if bn_mode == "batch" and gates != "on":
            continue
        sess, names = session(model, bn_mode, 32, tmp)
        compare(onnx_run(sess, names, image, g, target), exact(model, bn_mode, image, g, target))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "bn_mode", "gates", "onnx_rtol"),
    [
        ("resnet18", "running", "mixed", RTOL),
        ("resnet50", "running", "on", RTOL),
        ("resnet50", "batch", "on", 0.05),
    ],
)
def test_imagenet_at_224(tmp: Path, name: str, bn_mode: str, gates: str, onnx_rtol: float) -> None:
    """Full-size ImageNet models; ONNX Runtime is held to 5% only where float32 itself is that far off.

    ResNet-50 with batch statistics at initialisation is chaotic like the deep CIFAR plain nets
    (gradient norms in the hundreds to thousands): float32 autograd itself differs from float64
    autograd by ~1e-2, and so does ONNX Runtime. The torch-eager graph matches float32 autograd
    (the same arithmetic) to 1e-4.
    At 224x224 the ~20M ReLU inputs always include some within rounding of 0 (see kink_margin), so
    inputs are not searched; these two settings were measured at <= 3e-5 (ONNX vs autograd).
    """
    model = make_model(name)
    g = make_gates(model, gates)
    image, target = make_inputs(model, 2, 224, seed=600)
    compare(eager(model, bn_mode, image, g, target), reference(model, bn_mode, image, g, target))
    sess, names = session(model, bn_mode, 224, tmp)
    compare(onnx_run(sess, names, image, g, target), exact(model, bn_mode, image, g, target), rtol=onnx_rtol)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("resnet32", 32),
        ("resnet44", 32),
        ("resnet110", 32),
        ("resnet34", 64),
        ("resnet101", 64),
        ("resnet152", 64),
    ],
)
def test_every_other_model_onnx_matches_autograd(tmp: Path, name: str, size: int) -> None:
    """The rest of the family, BN running statistics, mixed gates (ImageNet models at 64x64 to stay quick)."""
    model = make_model(name)
    g = make_gates(model, "mixed")
    image, target = pick_inputs(model, "running", g, 1, size, seed=700)
    sess, names = session(model, "running", size, tmp)
    compare(onnx_run(sess, names, image, g, target), exact(model, "running", image, g, target))


@pytest.mark.slow
def test_resnet1202_eager_matches_autograd() -> None:
    """ResNet-1202: the same hand-written backward, run eagerly (its ONNX export takes too long for CI).

    Batch statistics and shortcuts on: at He initialisation with running statistics (BN = identity)
    1202 layers overflow float32 to inf; batch statistics keep every layer normalised.
    """
    model = make_model("resnet1202")
    g = make_gates(model, "on")
    image, target = make_inputs(model, 2, 32, seed=700)
    compare(eager(model, "batch", image, g, target), reference(model, "batch", image, g, target))
