"""Train the CIFAR-sized ResNets (residual or plain) on CPU and save small float16 state dicts.

``python -m app.nets.train resnet20 [--plain] [--steps N] [--data generated|cifar10:DIR]`` writes
``<out>/resnet20-residual.pt`` (a torchvision-format state dict, float tensors stored as float16)
and ``<out>/resnet20-residual.log.json`` (the recipe, per-step loss and accuracy, wall time and the
held-out accuracy). A plain run trains with every shortcut gate at 0: the paper's plain network.

``--no-bn`` trains the same network with every batch norm replaced by the identity (same data, seed and
schedule) and writes ``<model>-<variant>-nobn.log.json``; a run that diverges or stays at chance is retried
once at a lower peak learning rate (``--retry-lr``), both attempts recorded in the log. ``--grad-norms-at``
records ||dL/dW|| of every conv layer at the given steps; ``--no-weights`` writes the log alone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from app.nets import data as datamod
from app.nets.resnet import NORMS, ResNet, build
from app.specs import SPECS

MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4
FINAL_LOSS_WINDOW = 25  # "final training loss" = mean over this many last steps
DEFAULT_OUT = Path("models/weights")
GRAD_NORM_STEPS = (0, 10, 50, 100, 200)  # and the last step: where --grad-norms-at defaults to recording
STUCK_LOSS = math.log(10) - 0.1  # a final training loss above this is "stuck at chance" (ln 10 for 10 classes)


@dataclass(frozen=True)
class TrainResult:
    """What one training run produced."""

    weights_path: Path | None  # None: run with save_weights=False
    log_path: Path
    held_out_accuracy: float | None  # None: the run diverged, nothing to evaluate
    final_train_loss: float | None
    wall_time_s: float


def warmup_steps(steps: int) -> int:
    """Default length of the linear warmup: 5 % of the run, at least 1 and at most 50 steps."""
    return max(1, min(50, round(0.05 * steps)))


def lr_at(step: int, steps: int, lr: float, warmup: int | None = None) -> float:
    """Learning rate for 0-based ``step``: linear warmup to ``lr``, then cosine decay to 0."""
    w = warmup_steps(steps) if warmup is None else warmup
    if step < w:
        return lr * (step + 1) / w
    t = (step - w) / max(1, steps - w)
    return 0.5 * lr * (1.0 + math.cos(math.pi * t))


def default_grad_norm_steps(steps: int) -> list[int]:
    """The steps whose conv gradient norms a run records by default: 0, 10, 50, 100, 200 and the last one."""
    return sorted({s for s in (*GRAD_NORM_STEPS, steps - 1) if 0 <= s < steps})


def conv_layers(model: ResNet) -> list[tuple[str, torch.nn.Conv2d]]:
    """Every convolution of ``model`` with its module path, input to output."""
    return [(path, m) for path, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]


def conv_grad_norms(model: ResNet) -> list[float | None]:
    """||dL/dW|| (Frobenius, float64) of every conv layer's weight gradient; None where not finite or absent."""
    out: list[float | None] = []
    for _, conv in conv_layers(model):
        g = conv.weight.grad
        v = float(torch.linalg.vector_norm(g.double())) if g is not None else math.nan
        out.append(v if math.isfinite(v) else None)
    return out


def _finite(values: list[float]) -> list[float | None]:
    """The values with NaN and infinities as None (JSON has no such numbers)."""
    return [v if math.isfinite(v) else None for v in values]


def _parse_data(data: str) -> tuple[str, Path | None]:
    """Split a data spec into its kind and, for CIFAR-10, the directory."""
    if data == "generated":
        return "generated", None
    if data.startswith("cifar10:") and len(data) > len("cifar10:"):
        return "cifar10", Path(data[len("cifar10:") :]).expanduser()
    raise ValueError(f"data must be 'generated' or 'cifar10:DIR', got {data!r}")


def _validate(
    model_name: str,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    warmup: int | None,
    norm: str = "batch",
    grad_norm_steps: list[int] | None = None,
    retry_lr: float | None = None,
) -> None:
    """Raise ValueError for anything train() cannot run with."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    if retry_lr is not None and not (isinstance(retry_lr, int | float) and math.isfinite(retry_lr) and retry_lr > 0):
        raise ValueError(f"retry_lr must be a positive number, got {retry_lr!r}")
    if retry_lr is not None and not retry_lr < lr:
        raise ValueError(f"retry_lr ({retry_lr}) must be lower than lr ({lr})")
    if model_name not in SPECS:
        raise ValueError(f"unknown model {model_name!r}; known: {', '.join(SPECS)}")
    if SPECS[model_name].family != "cifar":
        cifar = [n for n, s in SPECS.items() if s.family == "cifar"]
        raise ValueError(f"{model_name} is an ImageNet model; training supports the CIFAR ones: {', '.join(cifar)}")
    for what, value in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{what} must be a positive integer, got {value!r}")
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if warmup is not None and (isinstance(warmup, bool) or not isinstance(warmup, int) or not 1 <= warmup <= steps):
        raise ValueError(f"warmup must be an integer from 1 to steps ({steps}), got {warmup!r}")
    for s in grad_norm_steps or []:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < steps:
            raise ValueError(f"grad-norm steps must be integers from 0 to steps - 1 ({steps - 1}), got {s!r}")


def _array_stream(
    images: np.ndarray, labels: np.ndarray, batch_size: int, rng: np.random.Generator
) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless shuffled batches from arrays, with the usual CIFAR augmentation (4-pixel crop, flip)."""
    n = len(images)
    size = images.shape[1]
    order = rng.permutation(n)
    pos = 0
    while True:
        if pos + batch_size > n:
            order, pos = rng.permutation(n), 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
        padded = np.pad(images[idx], ((0, 0), (4, 4), (4, 4), (0, 0)))
        out = np.empty_like(images[idx])
        offsets = rng.integers(0, 9, size=(len(idx), 2))
        flips = rng.random(len(idx)) < 0.5
        for i, ((dy, dx), flip) in enumerate(zip(offsets, flips, strict=True)):
            crop = padded[i, dy : dy + size, dx : dx + size]
            out[i] = crop[:, ::-1] if flip else crop
        yield datamod.to_tensor(out), torch.from_numpy(labels[idx])


def evaluate(model: ResNet, gates: Tensor, images_uint8: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of ``model`` in eval mode (BN running statistics) with ``gates`` on uint8 images."""
    was_training = model.training
    model.eval()
    correct = 0
    try:
        with torch.no_grad():
            for start in range(0, len(images_uint8), 250):
                x = datamod.to_tensor(images_uint8[start : start + 250])
                pred = model(x, gates).argmax(dim=1).numpy()
                correct += int((pred == np.asarray(labels[start : start + 250])).sum())
    finally:
        model.train(was_training)
    return correct / max(1, len(images_uint8))


def fp16_state_dict(model: ResNet) -> dict[str, Tensor]:
    """The model's state dict with float tensors cast to float16 (integer buffers unchanged)."""
    return {
        k: (v.detach().half() if v.is_floating_point() else v.detach()).clone() for k, v in model.state_dict().items()
    }


def load_state_dict_fp16(path: Path) -> dict[str, Tensor]:
    """Load a saved state dict with ``weights_only=True`` and cast its float tensors back to float32."""
    sd = torch.load(Path(path), map_location="cpu", weights_only=True)
    return {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through a temporary file in the same folder and ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _Progress:
    """A small progress bar on stderr: redrawn in place on a terminal, a line every 5 % otherwise."""

    def __init__(self, total: int, label: str, enabled: bool, unit: str = "steps") -> None:
        self.total, self.label, self.enabled, self.unit = total, label, enabled, unit
        self.tty = enabled and sys.stderr.isatty()
        self.start = time.perf_counter()
        self.last_draw = 0.0
        self.every = max(1, total // 20)

    def update(self, step: int, loss: float, acc: float) -> None:
        """Report that ``step`` (1-based) finished with this batch loss and accuracy."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty and step < self.total and now - self.last_draw < 0.1:
            return
        if not self.tty and step % self.every and step != self.total:
            return
        self.last_draw = now
        elapsed = now - self.start
        rate = step / elapsed if elapsed > 0 else 0.0
        eta = (self.total - step) / rate if rate > 0 else 0.0
        filled = int(24 * step / self.total)
        bar = "#" * filled + "." * (24 - filled)
        shown = f"{loss:.3f}" if abs(loss) < 1e4 else f"{loss:.3g}"  # a landscape's far points can be huge
        text = f"{self.label} [{bar}] {step}/{self.total} loss {shown} acc {acc:.2f} {rate:.2f} {self.unit}/s"
        text += f" eta {eta:.0f}s"
        if self.tty:
            sys.stderr.write("\r" + text + ("\n" if step == self.total else ""))
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


@dataclass
class _Curves:
    """Per-step batch loss, batch accuracy and learning rate of a run, and its wall time."""

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: float = 0.0
    diverged_at: int | None = None  # the step whose loss was not finite (the run stopped there)
    grad_norms: list[dict] = field(default_factory=list)  # {"step", "loss", "norms": per conv layer}


@dataclass
class _Attempt:
    """One training attempt: its peak learning rate, the model it left and its curves."""

    lr: float
    model: ResNet
    curves: _Curves
    final_loss: float | None
    outcome: str  # "trained", "diverged" or "stuck"

    def summary(self) -> dict:
        """What the log keeps of the attempt (all of them, when a run was retried)."""
        c = self.curves
        return {
            "peak_lr": self.lr,
            "outcome": self.outcome,
            "diverged_at_step": c.diverged_at,
            "steps_run": len(c.loss),
            "final_train_loss": self.final_loss,
            "wall_time_s": round(c.seconds, 3),
            "loss": _finite(c.loss),
        }


def train(
    model_name: str,
    *,
    plain: bool,
    steps: int,
    data: str = "generated",
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 0.05,
    warmup: int | None = None,
    out_dir: Path,
    progress: bool = True,
    norm: str = "batch",
    grad_norm_steps: list[int] | None = None,
    save_weights: bool = True,
    retry_lr: float | None = None,
    tag: str | None = None,
    compare_log: Path | None = None,
) -> TrainResult:
    """Train ``model_name`` (gates all 0 if ``plain``) with SGD and save its fp16 weights and a log.

    ``warmup`` is the number of linear warmup steps (default: 5 % of ``steps``, 1 to 50); the very
    deep models want a longer one, as He et al. found for ResNet-110 (Section 4.2).
    ``norm="none"`` replaces every BN by the identity; such a run records a divergence instead of
    raising, and with ``retry_lr`` a diverged or stuck run is retried once at that peak rate.
    ``grad_norm_steps`` records every conv layer's ||dL/dW|| at those steps; ``tag`` is appended to
    the file stem (default ``nobn`` without BN); ``compare_log`` names a log whose loss curve this run
    should reproduce (the log records whether it does).
    """
    _validate(model_name, steps, batch_size, lr, seed, warmup, norm, grad_norm_steps, retry_lr)
    warmup = warmup_steps(steps) if warmup is None else warmup
    kind, cifar_dir = _parse_data(data)
    train_arrays, (x_test, y_test), held_out_name = _load_data(kind, cifar_dir)
    reference = _reference_curve(compare_log)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = ("nobn" if norm == "none" else None) if tag is None else tag
    stem = f"{model_name}-{'plain' if plain else 'residual'}" + (f"-{tag}" if tag else "")
    weights_path, log_path = out_dir / f"{stem}.pt", out_dir / f"{stem}.log.json"
    record = sorted(set(grad_norm_steps)) if grad_norm_steps is not None else []

    attempts: list[_Attempt] = []
    gates = torch.full((SPECS[model_name].num_blocks,), 0.0 if plain else 1.0)
    for peak in [lr] if retry_lr is None else [lr, retry_lr]:
        attempt = _attempt(
            model_name, seed, norm, gates, train_arrays, batch_size, steps, peak, warmup, record, stem, progress
        )
        attempts.append(attempt)
        if attempt.outcome == "trained":
            break
        if progress and retry_lr is not None and peak != retry_lr:
            sys.stderr.write(f"{stem}: {attempt.outcome} at peak lr {peak}; retrying once at {retry_lr}\n")
    last = attempts[-1]
    model, curves, final_loss = last.model, last.curves, last.final_loss
    if last.outcome == "diverged":
        held_out, held_note = None, f"not evaluated: the run diverged at step {curves.diverged_at}"
    else:
        with _deterministic():
            held_out, held_note = evaluate(model, gates, x_test, y_test), None

    recipe = {
        "model": model_name,
        "plain": plain,
        "gates": gates.tolist(),
        "steps": steps,
        "batch_size": batch_size,
        "seed": seed,
        "data": data,
        "peak_lr": last.lr,
        "warmup_steps": warmup,
        "norm": norm,
    }
    held = {"accuracy": held_out, "set": held_out_name} | ({"note": held_note} if held_note else {})
    log = _training_log(recipe, curves, weights_path if save_weights else None, final_loss, held)
    if norm == "none" or len(attempts) > 1 or retry_lr is not None:
        log["attempts"] = [a.summary() for a in attempts]
        log["retried"] = len(attempts) > 1
        if len(attempts) > 1:
            first = attempts[0]
            log["retry_reason"] = (
                f"peak lr {first.lr}: {first.outcome}"
                + (f" at step {first.curves.diverged_at}" if first.outcome == "diverged" else "")
                + f"; retried once at peak lr {last.lr}: {last.outcome}"
            )
    if record:
        log["grad_norms"] = {
            "layers": [path for path, _ in conv_layers(model)],
            "what": "||dL/dW|| (Frobenius) of each conv weight after loss.backward(), before the SGD step",
            "records": curves.grad_norms,
        }
    if reference is not None:
        log["reproduces"] = _compare_curves(reference, curves.loss)
    log["command"] = _command_line(
        model_name,
        plain,
        steps,
        data,
        seed,
        batch_size,
        lr,
        warmup,
        out_dir,
        norm,
        record,
        save_weights,
        retry_lr,
        tag,
        compare_log,
    )
    if save_weights:
        sd = fp16_state_dict(model)
        _atomic_write(weights_path, lambda p: torch.save(sd, p))
    _atomic_write(log_path, lambda p: p.write_text(json.dumps(log, indent=1, allow_nan=False) + "\n"))
    if progress:
        held_text = f"{held_out:.3f}" if held_out is not None else "n/a (diverged)"
        loss_text = f"{final_loss:.3f}" if final_loss is not None else "n/a"
        sys.stderr.write(
            f"{stem}: {len(curves.loss)} steps in {curves.seconds:.1f}s, final train loss {loss_text}, "
            f"held-out accuracy {held_text} -> {weights_path if save_weights else log_path}\n"
        )
    return TrainResult(weights_path if save_weights else None, log_path, held_out, final_loss, curves.seconds)


def _attempt(
    model_name: str,
    seed: int,
    norm: str,
    gates: Tensor,
    train_arrays: tuple[np.ndarray, np.ndarray] | None,
    batch_size: int,
    steps: int,
    lr: float,
    warmup: int,
    record: list[int],
    stem: str,
    progress: bool,
) -> _Attempt:
    """One run from the seeded initialisation: the same model, data and schedule, peak rate ``lr``."""
    with _deterministic():
        torch.manual_seed(seed)
        model = build(model_name, seed, norm).train()  # BN uses batch statistics; model.bn_mode stays None
        stream = _batches(train_arrays, batch_size, seed)
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
        bar = _Progress(steps, stem, progress)
        curves = _run_steps(model, gates, stream, opt, steps, lr, warmup, bar, stem, set(record), norm == "batch")
        model.eval()
    if curves.diverged_at is not None:
        return _Attempt(lr, model, curves, None, "diverged")
    final_loss = float(np.mean(curves.loss[-FINAL_LOSS_WINDOW:]))
    return _Attempt(lr, model, curves, final_loss, "stuck" if final_loss > STUCK_LOSS else "trained")


def _reference_curve(path: Path | None) -> dict | None:
    """The loss curve and name of the log a run should reproduce (ValueError if unreadable)."""
    if path is None:
        return None
    try:
        log = json.loads(Path(path).read_text())
        return {"file": Path(path).name, "loss": [float(v) for v in log["loss"]]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"cannot read the loss curve of {path}: {exc}") from None


def _compare_curves(reference: dict, loss: list[float]) -> dict:
    """Whether this run's loss curve equals the reference log's, step by step."""
    ref = reference["loss"]
    n = min(len(ref), len(loss))
    diff = float(np.max(np.abs(np.asarray(ref[:n]) - np.asarray(loss[:n])))) if n else None
    return {
        "file": reference["file"],
        "steps_compared": n,
        "equal": len(ref) == len(loss) and ref == loss,
        "max_abs_loss_difference": diff,
    }


def _command_line(
    model_name: str,
    plain: bool,
    steps: int,
    data: str,
    seed: int,
    batch_size: int,
    lr: float,
    warmup: int,
    out_dir: Path,
    norm: str,
    record: list[int],
    save_weights: bool,
    retry_lr: float | None,
    tag: str | None,
    compare_log: Path | None,
) -> str:
    """The ``python -m app.nets.train`` command that makes this run again."""
    parts = ["python -m app.nets.train", model_name] + (["--plain"] if plain else [])
    parts += ["--steps", str(steps), "--seed", str(seed), "--batch-size", str(batch_size), "--lr", str(lr)]
    parts += ["--warmup", str(warmup), "--data", data, "--out", str(out_dir)]
    if norm == "none":
        parts.append("--no-bn")
    if record:
        parts += ["--grad-norms-at", ",".join(map(str, record))]
    if not save_weights:
        parts.append("--no-weights")
    if retry_lr is not None:
        parts += ["--retry-lr", str(retry_lr)]
    if tag and not (norm == "none" and tag == "nobn"):
        parts += ["--tag", tag]
    if compare_log is not None:
        parts += ["--compare-log", str(compare_log)]
    return " ".join(parts)


def _load_data(
    kind: str, cifar_dir: Path | None
) -> tuple[tuple[np.ndarray, np.ndarray] | None, tuple[np.ndarray, np.ndarray], str]:
    """The training arrays (None: the generated stream), the held-out (images, labels) and the held-out set's name."""
    if kind == "cifar10":
        assert cifar_dir is not None
        x_train, y_train, x_test, y_test = datamod.load_cifar10(cifar_dir)  # ValueError if missing/bad
        return (x_train, y_train), (x_test, y_test), f"CIFAR-10 test_batch ({len(x_test)} images)"
    x_test, y_test = datamod.test_set()
    return None, (x_test, y_test), f"generated test_set(n={len(x_test)}, seed=12345)"


def _batches(
    train_arrays: tuple[np.ndarray, np.ndarray] | None, batch_size: int, seed: int
) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless training batches: from the arrays (augmented), or from the generated set's stream."""
    if train_arrays is not None:
        return _array_stream(*train_arrays, batch_size, np.random.default_rng(seed))
    return datamod.train_stream(batch_size, seed)


@contextmanager
def _deterministic() -> Iterator[None]:
    """Deterministic torch algorithms inside the block (best effort), the previous setting after it."""
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True)
    except Exception:  # noqa: BLE001 - best effort; CPU kernels are deterministic anyway
        pass
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_deterministic)


def _run_steps(
    model: ResNet,
    gates: Tensor,
    stream: Iterator[tuple[Tensor, Tensor]],
    opt: torch.optim.Optimizer,
    steps: int,
    lr: float,
    warmup: int,
    bar: _Progress,
    stem: str,
    record: set[int] | None = None,
    raise_on_divergence: bool = True,
) -> _Curves:
    """``steps`` SGD steps on batches from ``stream``, recording conv gradient norms at the ``record`` steps.

    A loss that stops being finite raises RuntimeError, or (``raise_on_divergence=False``) ends the run
    with ``diverged_at`` set.
    """
    record = record or set()
    curves = _Curves()
    start = time.perf_counter()
    for step in range(steps):
        x, y = next(stream)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup)
        logits = model(x, gates)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if step in record:
            norms = conv_grad_norms(model)
            curves.grad_norms.append({"step": step, "loss": _finite([float(loss.detach())])[0], "norms": norms})
        opt.step()
        curves.loss.append(float(loss.detach()))
        curves.accuracy.append(float((logits.detach().argmax(dim=1) == y).float().mean()))
        curves.lr.append(opt.param_groups[0]["lr"])
        bar.update(step + 1, curves.loss[-1], curves.accuracy[-1])
        if not math.isfinite(curves.loss[-1]):
            if raise_on_divergence:
                raise RuntimeError(f"{stem}: training diverged at step {step} (loss {curves.loss[-1]})")
            curves.diverged_at = step
            break
    curves.seconds = time.perf_counter() - start
    return curves


def _training_log(
    recipe: dict, curves: _Curves, weights_path: Path | None, final_loss: float | None, held_out: dict
) -> dict:
    """The run's log: its recipe, the versions and threads it ran with, timings, held-out accuracy and curves."""
    steps, train_time = len(curves.loss), curves.seconds
    bn = (
        "train mode (batch statistics) while training; held-out accuracy with running statistics"
        if recipe["norm"] == "batch"
        else "none: every BatchNorm2d replaced by the identity (no normalisation, no affine parameters)"
    )
    weights = (
        {"file": weights_path.name, "format": "torchvision state dict, float tensors as float16"}
        if weights_path is not None
        else None
    )
    return {
        **{k: recipe[k] for k in ("model", "plain", "gates", "steps", "batch_size", "seed", "data", "norm")},
        "optimizer": {"name": "SGD", "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY, "nesterov": False},
        "lr_schedule": {
            "kind": "linear warmup, then cosine decay to 0",
            "peak_lr": recipe["peak_lr"],
            "warmup_steps": recipe["warmup_steps"],
        },
        "bn": bn,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "threads": torch.get_num_threads(),
        "weights": weights,
        "wall_time_s": round(train_time, 3),
        "steps_per_s": round(steps / train_time, 3) if train_time > 0 else None,
        "final_train_loss": final_loss,
        "final_train_loss_window": min(FINAL_LOSS_WINDOW, steps),
        "held_out": {**held_out, "gates": "as trained"},
        "loss": _finite(curves.loss),
        "accuracy": curves.accuracy,
        "lr": curves.lr,
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: train one model and print where its weights went; non-zero on bad input."""
    parser = argparse.ArgumentParser(prog="python -m app.nets.train", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a CIFAR model: resnet20, resnet32, resnet44, resnet56, resnet110, ...")
    parser.add_argument("--plain", action="store_true", help="train the plain twin (every shortcut gate 0)")
    parser.add_argument("--steps", type=int, default=400, help="SGD steps (default 400)")
    parser.add_argument("--data", default="generated", help="'generated' (default) or 'cifar10:DIR'")
    parser.add_argument("--seed", type=int, default=0, help="seed for the initialisation and the data (default 0)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--lr", type=float, default=0.05, help="peak learning rate (default 0.05)")
    parser.add_argument("--warmup", type=int, default=None, help="linear warmup steps (default 5%% of steps, 1-50)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--no-bn",
        action="store_true",
        help="replace every batch norm by the identity (writes <stem>-nobn.log.json, no weights)",
    )
    parser.add_argument(
        "--retry-lr",
        type=float,
        default=None,
        help="retry once at this peak lr if the run diverges or stays at chance (default with --no-bn: lr / 5)",
    )
    parser.add_argument(
        "--grad-norms-at",
        default=None,
        metavar="STEPS",
        help="record every conv layer's ||dL/dW|| at these steps: comma-separated, or 'default' (0,10,50,100,200,last)",
    )
    parser.add_argument("--no-weights", action="store_true", help="write the log only, no state dict")
    parser.add_argument("--tag", default=None, help="appended to the file stem: <model>-<variant>-<tag>.log.json")
    parser.add_argument("--compare-log", type=Path, default=None, help="a log whose loss curve this run reproduces")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse has printed its message
        return int(e.code or 0)
    try:
        record = _parse_steps(args.grad_norms_at, args.steps)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    retry_lr = args.retry_lr if args.retry_lr is not None or not args.no_bn else args.lr / 5
    try:
        result = train(
            args.model,
            plain=args.plain,
            steps=args.steps,
            data=args.data,
            seed=args.seed,
            batch_size=args.batch_size,
            lr=args.lr,
            warmup=args.warmup,
            out_dir=args.out,
            progress=not args.quiet,
            norm="none" if args.no_bn else "batch",
            grad_norm_steps=record,
            save_weights=not (args.no_weights or args.no_bn),  # the app serves BN networks only
            retry_lr=retry_lr,
            tag=args.tag,
            compare_log=args.compare_log,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    acc = result.held_out_accuracy
    print(
        f"{result.weights_path or result.log_path} held-out accuracy "
        + (f"{acc:.4f}" if acc is not None else "n/a (the run diverged)")
    )
    return 0


def _parse_steps(text: str | None, steps: int) -> list[int] | None:
    """``--grad-norms-at``: None, 'default', or comma-separated step numbers (ValueError otherwise)."""
    if text is None:
        return None
    if text.strip() == "default":
        return default_grad_norm_steps(steps)
    try:
        return sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"--grad-norms-at takes comma-separated step numbers or 'default', got {text!r}") from None


if __name__ == "__main__":
    raise SystemExit(main())
