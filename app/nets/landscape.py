"""The loss landscape of a trained CIFAR ResNet around its weights, after Li et al. 2018, section 4.

"Visualizing the Loss Landscape of Neural Nets": two random Gaussian directions d1, d2 in parameter space,
*filter-normalised* (each filter d_{i,j}, one output channel of a convolution or one row of the fc layer, is
scaled to the norm of the same filter theta_{i,j} of the trained weights), with zero in every 1-D parameter
(BN weight and bias, the fc bias) and in BN's running statistics, as the paper's code does; deterministic by
seed. The training loss (mean cross-entropy) and the accuracy on N images of the training stream (BN with
running statistics, eval mode; a plain network with every shortcut gate 0, as it was trained) are evaluated
along the slice ``theta + a d1`` and on the grid ``theta + a d1 + b d2``.

Each point runs through ONNX Runtime: the network is exported once with its conv and fc weights as graph
inputs, and every point feeds the perturbed weights (``OrtPoint``); ``TorchPoint`` does the same with a torch
forward. ``compare_backends`` times one grid point both ways; the result's ``backend`` records the timings.
``resviz landscape MODEL --weights trained|plain`` (app/cli/landscape.py) writes one surface as JSON;
``scripts/landscapes.sh`` recomputes the shipped set in ``models/landscapes/``.
"""

from __future__ import annotations

import copy
import json
import math
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from app.nets import data as datamod
from app.nets.landscape_metrics import (
    DEFAULT_GRID,
    DEFAULT_IMAGES,
    DEFAULT_SEED,
    DEFAULT_SPAN,
    centre_index,
    surface_metrics,
)
from app.nets.resnet import ResNet, build
from app.nets.train import _atomic_write, _Progress
from app.nets.weights import load_variant, sha256_file
from app.paths import DEFAULT_MODELS_DIR, shipped_weights
from app.specs import SPECS

FORMAT = 1
WEIGHTS = ("trained", "plain")  # the shipped CIFAR weights: with shortcuts, and the plain twin (gates 0)
TRAIN_BATCH = 64  # the shipped runs' batch size: the images are the first batches each run was trained on
DATA_SEED = 0  # the shipped runs' seed (their training stream)
BACKENDS = ("ort", "torch")
COMPARE_POINT = (0.3, -0.2)  # the grid point timed both ways
BN_ESTIMATE_BATCHES = 8  # training batches that re-estimate running statistics the shipped file cannot give
DEFAULT_OUT_DIR = Path("models/landscapes")

Direction = dict[str, Tensor]


def surface_name(model: str, weights: str) -> str:
    """The surface's file stem: ``resnet56-residual`` or ``resnet56-plain`` (as the shipped weights' files)."""
    return f"{model}-{'plain' if weights == 'plain' else 'residual'}"


def check_args(model: str, weights: str, grid: int, span: float, images: int, seed: int) -> None:
    """Raise ValueError for anything a landscape cannot be computed with."""
    if model not in SPECS or SPECS[model].family != "cifar":
        cifar = [n for n, s in SPECS.items() if s.family == "cifar"]
        raise ValueError(f"landscapes are computed for the CIFAR models with shipped weights: {', '.join(cifar)}")
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    if shipped_weights(model, weights) is None:
        raise ValueError(f"{model} has no shipped {weights!r} weights (make weights trains them)")
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 3 or grid % 2 == 0 or grid > 201:
        raise ValueError(f"grid must be an odd number from 3 to 201 (0 must be a grid point), got {grid!r}")
    if not (isinstance(span, int | float) and math.isfinite(span) and 0 < span <= 10):
        raise ValueError(f"span must be a number in (0, 10], got {span!r}")
    if isinstance(images, bool) or not isinstance(images, int) or not 1 <= images <= 10_000:
        raise ValueError(f"images must be a whole number from 1 to 10000, got {images!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def load_network(model: str, weights: str) -> tuple[ResNet, Tensor]:
    """The shipped network in eval mode (BN on running statistics) and its gates (all 0 for the plain twin)."""
    state, _, _ = load_variant(model, weights, DEFAULT_MODELS_DIR)
    net = build(model)
    net.load_state_dict(state)
    net.eval()
    net.bn_mode = "running"
    gates = torch.full((net.spec.num_blocks,), 0.0 if weights == "plain" else 1.0)
    return net, gates


def perturbed_names(net: nn.Module) -> list[str]:
    """The parameters a direction moves: every conv and fc weight (the tensors with filters, ``dim > 1``)."""
    return [name for name, p in net.named_parameters() if p.dim() > 1]


def random_direction(net: nn.Module, generator: torch.Generator) -> Direction:
    """One filter-normalised Gaussian direction over every float entry of the state dict (zero but the filters)."""
    moved = set(perturbed_names(net))
    out: Direction = {}
    for name, theta in net.state_dict().items():
        if not theta.is_floating_point():
            continue
        if name not in moved:
            out[name] = torch.zeros_like(theta)
            continue
        d = torch.randn(theta.shape, generator=generator, dtype=torch.float32)
        dims = tuple(range(1, theta.dim()))
        d_norm = torch.linalg.vector_norm(d, dim=dims, keepdim=True)
        theta_norm = torch.linalg.vector_norm(theta.detach().float(), dim=dims, keepdim=True)
        out[name] = d * (theta_norm / (d_norm + 1e-10))  # filter j of d gets the norm of filter j of theta
    return out


def directions(net: nn.Module, seed: int) -> tuple[Direction, Direction]:
    """d1 and d2, drawn one after the other from one generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return random_direction(net, generator), random_direction(net, generator)


def training_images(n: int, seed: int = DATA_SEED) -> tuple[Tensor, Tensor]:
    """The first ``n`` images (normalised NCHW) and labels of the training stream the shipped runs used."""
    xs, ys, have = [], [], 0
    for x, y in datamod.train_stream(TRAIN_BATCH, seed):
        xs.append(x)
        ys.append(y)
        have += len(y)
        if have >= n:
            break
    return torch.cat(xs)[:n].contiguous(), torch.cat(ys)[:n].contiguous()


def non_finite_statistics(net: nn.Module) -> list[str]:
    """BN running statistics of ``net`` that are not finite (a float16 overflow of a huge variance, say)."""
    return [k for k, v in net.state_dict().items() if "running_" in k and not bool(torch.isfinite(v).all())]


def reestimate_bn_statistics(net: ResNet, gates: Tensor, batches: int = BN_ESTIMATE_BATCHES) -> None:
    """Recompute every BN layer's running statistics as the average over the first training batches."""
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [m.momentum for m in bns]
    mode = net.bn_mode
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches, not an exponential one
        net.bn_mode = None
        net.train()
        with torch.no_grad():
            for k, (x, _) in enumerate(datamod.train_stream(TRAIN_BATCH, DATA_SEED)):
                if k == batches:
                    break
                net(x, gates)
    finally:
        for m, momentum in zip(bns, momenta, strict=True):
            m.momentum = momentum
        net.eval()
        net.bn_mode = mode


def usable_statistics(net: ResNet, gates: Tensor, x: Tensor, y: Tensor) -> dict:
    """Keep the shipped running statistics unless the unperturbed loss with them is not finite; then re-estimate."""
    bad = non_finite_statistics(net)
    with torch.inference_mode():
        loss, _ = loss_and_accuracy(net(x, gates).numpy(), y.numpy())
    record: dict = {"source": "shipped", "non_finite_in_shipped": bad}
    if math.isfinite(loss):
        return record
    reestimate_bn_statistics(net, gates)
    return {
        **record,
        "source": "re-estimated",
        "images": BN_ESTIMATE_BATCHES * TRAIN_BATCH,
        "why": f"with the shipped running statistics the unperturbed network's loss is not finite ({len(bad)} "
        "statistics tensors are inf or NaN: float16 overflow of huge variances); every BN layer's running mean and "
        f"variance were recomputed as the average over the first {BN_ESTIMATE_BATCHES} training batches of "
        f"{TRAIN_BATCH} (train-mode forward with the shipped weights)",
    }


def loss_and_accuracy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy (float64 log-softmax) and accuracy of ``logits`` (N, C); inf/NaN where logits are."""
    z = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    with np.errstate(over="ignore", invalid="ignore"):
        top = z.max(axis=1, keepdims=True)
        lse = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
        loss = float(np.mean(lse - z[np.arange(len(labels)), labels]))
    if np.isnan(z).any():
        return math.nan, math.nan
    if not np.all(np.isfinite(z)):
        loss = math.inf  # an overflowing logit: the loss is not a number float32 can give
    return loss, float(np.mean(z.argmax(axis=1) == labels))


class TorchPoint:
    """One point of the landscape with a torch forward: the perturbed weights copied into the network."""

    label = "torch"

    def __init__(self, net: ResNet, gates: Tensor, x: Tensor, y: Tensor, d1: Direction, d2: Direction) -> None:
        self.net, self.gates, self.x, self.y = net, gates, x, y.numpy()
        self.params = dict(net.named_parameters())
        self.names = perturbed_names(net)
        self.theta = {n: self.params[n].detach().clone() for n in self.names}
        self.d1, self.d2 = {n: d1[n] for n in self.names}, {n: d2[n] for n in self.names}

    def __call__(self, a: float, b: float) -> tuple[float, float]:
        """Loss and accuracy at theta + a d1 + b d2 (the network's weights are restored afterwards)."""
        try:
            with torch.inference_mode():
                for n in self.names:
                    self.params[n].copy_(self.theta[n] + a * self.d1[n] + b * self.d2[n])
                logits = self.net(self.x, self.gates).numpy()
        finally:
            with torch.no_grad():
                for n in self.names:
                    self.params[n].copy_(self.theta[n])
        return loss_and_accuracy(logits, self.y)


class _WeightsAsInputs(nn.Module):
    """A copy of the network whose conv and fc weights are forward arguments (exported as graph inputs)."""

    def __init__(self, net: ResNet, gates: Tensor, names: list[str]) -> None:
        super().__init__()
        self.net = copy.deepcopy(net)
        self.net.bn_mode = "running"
        self.register_buffer("gates", gates.clone())
        self.slots: list[tuple[nn.Module, str]] = []
        for name in names:
            path, attr = name.rsplit(".", 1)
            module = self.net.get_submodule(path)
            del module._parameters[attr]  # a plain attribute from now on, set on every call
            setattr(module, attr, None)
            self.slots.append((module, attr))

    def forward(self, image: Tensor, *weights: Tensor) -> Tensor:
        """Logits of ``image`` with these conv and fc weights."""
        for (module, attr), w in zip(self.slots, weights, strict=True):
            setattr(module, attr, w)
        return self.net(image, self.gates)


class OrtPoint:
    """One point of the landscape through ONNX Runtime: one graph, the perturbed weights fed as its inputs."""

    label = "onnxruntime"

    def __init__(
        self, net: ResNet, gates: Tensor, x: Tensor, y: Tensor, d1: Direction, d2: Direction, threads: int
    ) -> None:
        import onnxruntime as ort

        from app.runtime.registry import ModelRegistry

        t0 = time.perf_counter()
        self.names = perturbed_names(net)
        params = dict(net.named_parameters())
        self.theta = [params[n].detach().numpy().copy() for n in self.names]
        self.d1 = [d1[n].numpy() for n in self.names]
        self.d2 = [d2[n].numpy() for n in self.names]
        self.inputs = [f"w{i}" for i in range(len(self.names))]
        self.x, self.y = x.numpy(), y.numpy()
        wrapper = _WeightsAsInputs(net, gates, self.names).eval()
        with tempfile.TemporaryDirectory(prefix="resviz-landscape-") as tmp:
            path = Path(tmp) / "landscape.onnx"
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    wrapper,
                    (x[:2], *[torch.from_numpy(t) for t in self.theta]),
                    str(path),
                    input_names=["image", *self.inputs],
                    output_names=["logits"],
                    dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                    opset_version=17,
                    dynamo=False,
                    do_constant_folding=True,
                )
            self.session = ModelRegistry(Path(tmp)).open_session(path, threads)
        self.version = ort.__version__
        self.setup_s = time.perf_counter() - t0

    def __call__(self, a: float, b: float) -> tuple[float, float]:
        """Loss and accuracy at theta + a d1 + b d2."""
        fa, fb = np.float32(a), np.float32(b)
        feed = {"image": self.x}
        for name, t, u, v in zip(self.inputs, self.theta, self.d1, self.d2, strict=True):
            feed[name] = t + fa * u + fb * v
        (logits,) = self.session.run(["logits"], feed)
        return loss_and_accuracy(logits, self.y)


def time_point(point: Callable[[float, float], tuple[float, float]], repeats: int) -> float:
    """Median seconds of one grid point (perturb, forward the images, loss), after one warm-up call."""
    point(*COMPARE_POINT)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        point(*COMPARE_POINT)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def compare_backends(torch_point: TorchPoint, ort_point: OrtPoint, repeats: int, threads: int) -> dict:
    """Both ways of computing one grid point, timed on this machine as it is now."""
    torch_s, ort_s = time_point(torch_point, repeats), time_point(ort_point, repeats)
    agree = abs(torch_point(*COMPARE_POINT)[0] - ort_point(*COMPARE_POINT)[0])
    return {
        "point": list(COMPARE_POINT),
        "repeats": repeats,
        "threads": threads,
        "torch_s": round(torch_s, 4),
        "onnxruntime_s": round(ort_s, 4),
        "onnxruntime_setup_s": round(ort_point.setup_s, 3),
        "faster": "onnxruntime" if ort_s < torch_s else "torch",
        "speedup": round(torch_s / ort_s, 3) if ort_s > 0 else None,
        "loss_difference": float(agree),
        "what": "median seconds of one grid point (perturb the weights, forward the images, loss): a torch eval "
        "forward with the weights copied in, against ONNX Runtime on one graph exported with the conv and fc "
        "weights as its inputs",
    }


def _num(x: float, digits: int = 7) -> float | None:
    """A number for the JSON file: ``digits`` significant digits, None where it is not finite."""
    return float(f"{x:.{digits}g}") if math.isfinite(x) else None


def command_line(model: str, weights: str, grid: int, span: float, images: int, seed: int, out: Path | None) -> str:
    """The ``resviz landscape`` command that makes this surface."""
    cmd = f"resviz landscape {model} --weights {weights} --grid {grid} --span {span:g} --images {images} --seed {seed}"
    return cmd + (f" --out {out}" if out is not None else "")


def compute(
    model: str,
    weights: str,
    *,
    grid: int = DEFAULT_GRID,
    span: float = DEFAULT_SPAN,
    images: int = DEFAULT_IMAGES,
    seed: int = DEFAULT_SEED,
    backend: str = "ort",
    threads: int | None = None,
    compare_repeats: int = 3,
    progress: bool = True,
    out: Path | None = None,
) -> dict:
    """One surface: the 1-D slice and the 2-D grid of loss and accuracy, their metrics, timings and provenance."""
    check_args(model, weights, grid, span, images, seed)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 1024):
        raise ValueError(f"threads must be a whole number from 1 to 1024, got {threads!r}")
    start = time.perf_counter()
    threads = threads if threads is not None else torch.get_num_threads()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        net, gates = load_network(model, weights)
        d1, d2 = directions(net, seed)
        x, y = training_images(images)
        bn_statistics = usable_statistics(net, gates, x, y)
        torch_point = TorchPoint(net, gates, x, y, d1, d2)
        ort_point, comparison = None, None
        if backend == "ort" or compare_repeats > 0:
            ort_point = OrtPoint(net, gates, x, y, d1, d2, threads)
            if compare_repeats > 0:
                comparison = compare_backends(torch_point, ort_point, compare_repeats, threads)
        point = ort_point if backend == "ort" and ort_point is not None else torch_point
        result = _evaluate(point, grid, span, f"{surface_name(model, weights)}", progress)
    finally:
        torch.set_num_threads(previous_threads)
    wall = time.perf_counter() - start
    coords, alpha = result["coords"], result["alpha"]
    loss, acc = np.array(result["loss"]), np.array(result["accuracy"])
    metrics = surface_metrics(loss, coords, alpha, np.array(result["slice_loss"]))
    moved = perturbed_names(net)
    flat1 = torch.cat([d1[n].flatten() for n in moved])
    flat2 = torch.cat([d2[n].flatten() for n in moved])
    weights_path = shipped_weights(model, weights)
    assert weights_path is not None
    return {
        "format": FORMAT,
        "surface": surface_name(model, weights),
        "model": model,
        "depth": SPECS[model].depth,
        "weights": weights,
        "plain": weights == "plain",
        "gates": "all-off" if weights == "plain" else "all-on",
        "weights_file": weights_path.name,
        "weights_sha256": sha256_file(weights_path),
        "command": command_line(model, weights, grid, span, images, seed, out),
        "seed": seed,
        "grid": grid,
        "span": span,
        "images": images,
        "data": {
            "source": f"the first {images} images of the generated training stream "
            f"(app.nets.data.train_stream(batch_size={TRAIN_BATCH}, seed={DATA_SEED})), the batches the shipped "
            "run was trained on first",
            "batch_size": TRAIN_BATCH,
            "seed": DATA_SEED,
            "class_counts": np.bincount(y.numpy(), minlength=len(datamod.CLASSES)).tolist(),
        },
        "directions": {
            "kind": "random Gaussian, filter-normalised (Li et al. 2018, section 4)",
            "seed": seed,
            "tensors": len(moved),
            "parameters": int(flat1.numel()),
            "zero": "BN weight, bias and running statistics; the fc bias (every 1-D parameter)",
            "cosine_d1_d2": float(torch.nn.functional.cosine_similarity(flat1, flat2, dim=0)),
        },
        "loss_definition": "mean cross-entropy on the images; BN with running statistics (eval mode)",
        "bn_statistics": bn_statistics,
        "coords": [_num(c, 12) for c in coords],
        "loss": [[_num(v) for v in row] for row in loss.tolist()],
        "accuracy": [[_num(v, 6) for v in row] for row in acc.tolist()],
        "slice": {
            "direction": "d1",
            "alpha": [_num(a, 12) for a in alpha],
            "loss": [_num(v) for v in result["slice_loss"]],
            "accuracy": [_num(v, 6) for v in result["slice_accuracy"]],
        },
        "metrics": metrics,
        "backend": {"used": point.label, "comparison": comparison},
        "threads": threads,
        "points": result["points"],
        "evaluate_s": round(result["seconds"], 3),
        "seconds_per_point": round(result["seconds"] / result["points"], 4),
        "wall_time_s": round(wall, 3),
        "torch_version": torch.__version__,
        "onnxruntime_version": ort_point.version if ort_point is not None else None,
        "numpy_version": np.__version__,
    }


def _evaluate(
    point: Callable[[float, float], tuple[float, float]], grid: int, span: float, label: str, progress: bool
) -> dict:
    """Every point of the grid (rows b, columns a) and of the slice along d1 (its grid points shared)."""
    coords = np.linspace(-span, span, grid)
    alpha = np.linspace(-span, span, 2 * grid - 1)  # every other slice point is a grid point of row b = 0
    centre = centre_index(coords)
    coords[centre] = 0.0
    alpha[::2] = coords  # exactly the grid's coordinates, so the shared points are the same points
    total = grid * grid + grid - 1
    bar = _Progress(total, f"{label} landscape", progress, unit="points")
    loss = np.full((grid, grid), np.nan)
    acc = np.full((grid, grid), np.nan)
    slice_loss = np.full(len(alpha), np.nan)
    slice_acc = np.full(len(alpha), np.nan)
    done = 0
    t0 = time.perf_counter()
    for i, b in enumerate(coords):
        for j, a in enumerate(coords):
            loss[i, j], acc[i, j] = point(float(a), float(b))
            done += 1
            bar.update(done, loss[i, j], acc[i, j])
    for k, a in enumerate(alpha):
        if k % 2 == 0:
            slice_loss[k], slice_acc[k] = loss[centre, k // 2], acc[centre, k // 2]
            continue
        slice_loss[k], slice_acc[k] = point(float(a), 0.0)
        done += 1
        bar.update(done, slice_loss[k], slice_acc[k])
    return {
        "coords": coords.tolist(),
        "alpha": alpha.tolist(),
        "loss": loss,
        "accuracy": acc,
        "slice_loss": slice_loss.tolist(),
        "slice_accuracy": slice_acc.tolist(),
        "points": done,
        "seconds": time.perf_counter() - t0,
    }


def finite_json(obj: object) -> object:
    """``obj`` with every non-finite float replaced by None (JSON has no NaN or infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    return obj


def write(result: dict, path: Path) -> Path:
    """Write one surface as JSON (atomically; a number that is not finite is written as null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(finite_json(result), indent=1, allow_nan=False) + "\n"
    _atomic_write(path, lambda p: p.write_text(text))
    return path
