"""The torch modules an export turns into graphs, and what the forward pass records (the taps).

``TapGraph`` returns every tap, ``StatsGraph`` reduces them in the graph, ``LesionGraph`` scales the
residual branches per image. The tap helpers read each tap's kind from the module that records it and
each BN layer's input from the order the forward pass records them in.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from app.nets.resnet import ResNet, ZeroPadShortcut, _Block
from app.runtime.stats import HIST_SAMPLE, PAIR_SAMPLE


class TapGraph(nn.Module):
    """Forward pass returning ``(logits, *taps)`` with BN in a fixed mode."""

    def __init__(self, model: ResNet, bn_mode: str, taps: bool = True) -> None:
        super().__init__()
        self.model = model
        self.bn_mode = bn_mode
        self.taps = taps
        self.tap_names = tap_order(model) if taps else []

    def forward(self, image: Tensor, gates: Tensor) -> tuple[Tensor, ...]:
        """Logits and, when taps are on, every recorded tensor in ``tap_names`` order."""
        recorded: dict[str, Tensor] = {}
        self.model.bn_mode = self.bn_mode
        try:
            logits = self.model(image, gates, rec=recorded.__setitem__ if self.taps else None)
        finally:
            self.model.bn_mode = None
        return (logits, *(recorded[n] for n in self.tap_names))


# Taps whose statistics the stats graph measures in full; BN outputs are derived from their
# input (y = scale * x + shift per channel), so for them only zeros and a sample are measured.
MEASURED_KINDS = ("conv", "stem", "block", "shortcut")


def strided(t: Tensor, size: int, limit: int) -> Tensor:
    """Every ceil(size / limit)-th element of each image's flattened tensor: (N, <= limit)."""
    step = -(-size // limit)
    return torch.flatten(t, 1)[:, ::step]


class StatsGraph(nn.Module):
    """Forward pass that reduces every tap inside the graph instead of returning it.

    Outputs, per image: logits; for measured taps per-channel sum, sum of squares, min and max
    and the count of exact zeros; for BN outputs the zero count; a strided sample of every tap
    (histograms); (x, F(x)) pairs of every block; and the stem and block outputs in full
    (feature-map thumbnails). ORT runs the reductions in its own threads next to the convs.
    """

    def __init__(self, model: ResNet, bn_mode: str) -> None:
        super().__init__()
        self.model = model
        self.bn_mode = bn_mode
        recorded = record_all(model)
        self.sizes = {n: int(t[0].numel()) for n, t in recorded.items()}
        self.kinds = {n: tap_kind(model, n) for n in recorded}
        self.pairs = {b["residual"]: b for b in block_taps(model)}
        self.output_names = ["logits", *(name for name, _ in self._outputs(recorded))]

    def _outputs(self, recorded: dict[str, Tensor]) -> list[tuple[str, Tensor]]:
        out: list[tuple[str, Tensor]] = []
        for n, t in recorded.items():
            kind = self.kinds[n]
            if kind in MEASURED_KINDS:
                out += [
                    (f"{n}:sum", t.sum((2, 3))),
                    (f"{n}:sumsq", (t * t).sum((2, 3))),
                    (f"{n}:min", t.amin((2, 3))),
                    (f"{n}:max", t.amax((2, 3))),
                ]
            out.append((f"{n}:zeros", (t == 0).float().sum((1, 2, 3))))
            out.append((f"{n}:sample", strided(t, self.sizes[n], HIST_SAMPLE)))
            if kind in ("stem", "block"):
                out.append((n, t))
        for residual, b in self.pairs.items():
            size = self.sizes[residual]
            out.append((f"{b['id']}:pair_x", strided(recorded[b["shortcut"]], size, PAIR_SAMPLE)))
            out.append((f"{b['id']}:pair_f", strided(recorded[residual], size, PAIR_SAMPLE)))
        return out

    def forward(self, image: Tensor, gates: Tensor) -> tuple[Tensor, ...]:
        """Logits and the reductions named in ``output_names[1:]``, in that order."""
        recorded: dict[str, Tensor] = {}
        self.model.bn_mode = self.bn_mode
        try:
            logits = self.model(image, gates, rec=recorded.__setitem__)
        finally:
            self.model.bn_mode = None
        return (logits, *(t for _, t in self._outputs(recorded)))


class LesionGraph(nn.Module):
    """Forward with BN running statistics and a per-image factor on every residual branch."""

    def __init__(self, model: ResNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor, gates: Tensor, branch: Tensor) -> Tensor:
        """Logits (N, classes) for images (N, 3, H, W) and branch factors (N, num_blocks)."""
        self.model.bn_mode = "running"
        try:
            return self.model(image, gates, branch=branch)
        finally:
            self.model.bn_mode = None


def record_all(model: ResNet) -> dict[str, Tensor]:
    """Every tap of one forward pass on a zero image, in the order it is recorded."""
    size = model.spec.input_size
    recorded: dict[str, Tensor] = {}
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size), rec=recorded.__setitem__)
    return recorded


def tap_order(model: ResNet) -> list[str]:
    """Tap ids in the order the forward pass records them."""
    return list(record_all(model))


def tap_kind(model: ResNet, name: str) -> str:
    """What a tap is, read from the module that records it: conv, bn, shortcut (option A), block or stem."""
    module = model.get_submodule(name)
    if isinstance(module, nn.Conv2d):
        return "conv"
    if isinstance(module, nn.BatchNorm2d):
        return "bn"
    if isinstance(module, ZeroPadShortcut):
        return "shortcut"
    if isinstance(module, _Block):
        return "block"
    return "stem"  # the stem's ReLU (CIFAR) or max pool (ImageNet)


def bn_inputs(model: ResNet, recorded: dict[str, Tensor]) -> dict[str, str]:
    """Each BN layer's input tap: the conv output the forward pass records just before the BN output."""
    order = list(recorded)
    inputs = {}
    for i, name in enumerate(order):
        if i and isinstance(model.get_submodule(name), nn.BatchNorm2d):
            if tap_kind(model, order[i - 1]) != "conv":
                raise ValueError(f"{name} does not follow a convolution in the forward pass")
            inputs[name] = order[i - 1]
    return inputs


def block_taps(model: ResNet) -> list[dict]:
    """Each residual block with the tap ids of its input, residual F(x), shortcut S(x) and output."""
    spec = model.spec
    stem = "maxpool" if spec.family == "imagenet" else "relu"
    blocks = []
    prev = stem
    for s, stage in enumerate(model.stages()):
        for i, block in enumerate(stage):
            path = block.path
            last_bn = "bn2" if spec.block == "basic" else "bn3"
            if block.downsample is None:
                shortcut, kind = prev, "identity"
            elif spec.shortcut == "A":
                shortcut, kind = f"{path}.downsample", "A"
            else:
                shortcut, kind = f"{path}.downsample.1", "B"
            blocks.append(
                {
                    "id": path,
                    "stage": s + 1,
                    "index": i,
                    "input": prev,
                    "residual": f"{path}.{last_bn}",
                    "shortcut": shortcut,
                    "output": path,
                    "shortcut_kind": kind,
                }
            )
            prev = path
    return blocks
