"""Class activation maps and the input gradient of a ResNet in one ONNX graph (the explain graph).

:class:`ExplainGraph` runs the forward pass with a tape (the layers of :mod:`app.nets.backward_ops`,
numerically the ResNet's own forward), then the backward of the class score
S = sum_n logits[n, target_n] (before the softmax, as the Grad-CAM papers define it): input gradients
only, no weight gradients, through every block (gated sum, ReLU, BN with running or batch statistics,
convolutions, projection or zero-pad shortcuts), the max pool and the stem, down to the image.

At every layer L (the stem's tap, ``relu`` or ``maxpool``, and every block's output), with A its
activation (N, C, h, w) and G = dS/dA, the output ``cam:<L>:<method>`` (N, h, w) holds one of the maps of
``app.specs.CAM_METHODS``:

* Grad-CAM (Selvaraju et al. 2017): w_k = mean_ij G_kij, map = ReLU(sum_k w_k A_k);
* Grad-CAM++ (Chattopadhay et al. 2018, the closed form for the exponential of the score):
  alpha = G^2 / (2 G^2 + sum_ij(A_k) G^3) (1 where that denominator is 0),
  w_k = sum_ij alpha_kij ReLU(G_kij), map = ReLU(sum_k w_k A_k) (computed as :func:`gradcampp` says);
* HiResCAM (Draelos & Carin 2020): map = ReLU(sum_k G_k * A_k);
* LayerCAM (Jiang et al. 2021): map = ReLU(sum_k ReLU(G_k) * A_k).

A run computes the maps of one method only, the graph's int64 input ``method`` (its index in
``CAM_METHODS``, or ``app.specs.NO_CAM`` for none; ``app.nets.levels.select_outputs``): the other methods'
outputs come back with an empty batch axis. The four together cost ~0.5x a forward pass for ResNet-50
at every layer; one costs a fraction of that.

``grad_image`` (N, 3, H, W) is dS/d(image) (saliency, SmoothGrad, integrated gradients), ``logits``
the forward's logits and ``target_class`` the class each image's score used (the input ``target``,
or the argmax where it is -1). An output cannot share the input's name in ONNX, hence
``target_class``.

The graph keeps to the model's own weights: the BN of running statistics stays a BatchNormalization
node (ONNX Runtime folds it into the conv when it loads the graph), and every kernel the backward
derives is computed in the graph from the model's weight (``backward_ops.shared_kernel_input_grad``),
so the export adds no folded, flipped or transposed copy of any kernel to the model's weights file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from app.nets.backward import export_tape_graph
from app.nets.backward_ops import (
    BNCache,
    batch_expand,
    bn_batch_backward,
    bn_forward,
    bn_scale,
    conv_forward,
    maxpool_backward,
    relu_backward,
    shared_kernel_input_grad,
    zero_pad_backward,
    zero_pad_forward,
)
from app.nets.levels import Level, nest_levels, select_outputs
from app.nets.resnet import ResNet, ZeroPadShortcut, _Block
from app.specs import BN_MODES, CAM_METHODS, cam_output

METHOD_INPUT = "method"


@dataclass
class _Step:
    """One conv + BN (+ ReLU) of the forward pass, as its input gradient needs it."""

    conv: nn.Conv2d
    bn: nn.BatchNorm2d
    x: Tensor  # conv input (its shape: the transposed convolution's output size)
    cache: BNCache | None  # batch statistics only
    y: Tensor  # the step's output (after the ReLU when relu is set: the mask is y > 0 either way)
    relu: bool


@dataclass
class _BlockTape:
    """Saved tensors of one residual block."""

    block: _Block
    gate: Tensor  # () float
    x: Tensor  # block input
    body: list[_Step]
    proj: _Step | None  # projection shortcut (option B)
    h: Tensor  # block output relu(F + g * S)


def stem_layer(model: ResNet) -> str:
    """The tap id the forward records after the stem: ``maxpool`` (ImageNet nets) or ``relu`` (CIFAR nets)."""
    return "maxpool" if model.maxpool is not None else "relu"


def explain_layers(model: ResNet) -> list[str]:
    """The layers with class activation maps, in forward order: the stem, then every block."""
    return [stem_layer(model), *(path for path, _ in model.named_blocks())]


def gradcam(a: Tensor, g: Tensor) -> Tensor:
    """Grad-CAM (N, h, w): w_k = mean_ij G_kij, ReLU(sum_k w_k A_k)."""
    c, h, w = int(a.shape[1]), int(a.shape[2]), int(a.shape[3])
    weights = g.mean(dim=(2, 3)).unsqueeze(1)  # (N, 1, C)
    return F.relu(torch.matmul(weights, a.reshape(-1, c, h * w)).reshape(-1, h, w))


def gradcampp(a: Tensor, g: Tensor) -> Tensor:
    """Grad-CAM++ (N, h, w) for activations ``a`` >= 0: w_k = sum_ij ReLU(G) / (2 + sum_ij(A) ReLU(G)).

    That is the paper's alpha * ReLU(G) with alpha = G^2 / (2 G^2 + sum_ij(A) G^3): where G > 0 divided
    through by G^2, and where G <= 0 both are 0 (the denominator 2 > 0, since A >= 0 at every layer here:
    block outputs and the stem are ReLU outputs). It is half the work, and exact where float32 G^2 and G^3
    would underflow to 0 (the tiny gradients of deep plain nets).
    """
    c, h, w = int(a.shape[1]), int(a.shape[2]), int(a.shape[3])
    pos = F.relu(g)
    weights = (pos / (pos * a.sum(dim=(2, 3), keepdim=True) + 2.0)).sum(dim=(2, 3)).unsqueeze(1)  # (N, 1, C)
    return F.relu(torch.matmul(weights, a.reshape(-1, c, h * w)).reshape(-1, h, w))


def hirescam(a: Tensor, g: Tensor) -> Tensor:
    """HiResCAM (N, h, w): ReLU(sum_k G_k * A_k)."""
    return F.relu((g * a).sum(dim=1))


def layercam(a: Tensor, g: Tensor) -> Tensor:
    """LayerCAM (N, h, w): ReLU(sum_k ReLU(G_k) * A_k)."""
    return F.relu((F.relu(g) * a).sum(dim=1))


CAMS = {"gradcam": gradcam, "gradcampp": gradcampp, "hirescam": hirescam, "layercam": layercam}
assert tuple(CAMS) == CAM_METHODS


class ExplainGraph(nn.Module):
    """Logits, the class used, the CAMs of every layer and dS/d(image) for one class score per image."""

    def __init__(self, model: ResNet, bn_mode: str) -> None:
        super().__init__()
        if bn_mode not in BN_MODES:
            raise ValueError(f"bn mode must be one of {BN_MODES}, got {bn_mode!r}")
        self.model = model
        self.bn_mode = bn_mode
        self.layers = explain_layers(model)

    def output_names(self) -> list[str]:
        """Names of the tensors ``forward`` returns, in order."""
        cams = [cam_output(layer, method) for layer in self.layers for method in CAM_METHODS]
        return ["logits", "target_class", *cams, "grad_image"]

    def batch_outputs(self) -> list[str]:
        """Every output: each has the batch axis first."""
        return self.output_names()

    def _step(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, x: Tensor, relu: bool) -> _Step:
        """Forward one conv + BN (+ ReLU), keeping what its input gradient needs."""
        y, cache = bn_forward(bn, conv_forward(conv, x), self.bn_mode)
        return _Step(conv, bn, x, cache, F.relu(y) if relu else y, relu)

    @staticmethod
    def _step_backward(step: _Step, dout: Tensor) -> Tensor:
        """dS/d(conv input) from dS/d(step output), through the ReLU (if any), the BN and the conv."""
        dy = relu_backward(dout, step.y) if step.relu else dout
        if step.cache is not None:  # batch statistics: the BN's own backward
            dz, scale = bn_batch_backward(step.bn, step.cache, dy)[0], None
        else:  # running statistics: dS/dz = gamma / std * dy, a constant (C,)
            dz, scale = dy, bn_scale(step.bn)[1]
        return shared_kernel_input_grad(step.conv, dz, step.x, scale)

    def _block_forward(self, block: _Block, x: Tensor, gate: Tensor) -> _BlockTape:
        """Forward one residual block, H = relu(F(x) + g * S(x)), keeping its tape."""
        depth = 3 if hasattr(block, "conv3") else 2
        body, h = [], x
        for k in range(1, depth + 1):
            step = self._step(getattr(block, f"conv{k}"), getattr(block, f"bn{k}"), h, relu=k < depth)
            body.append(step)
            h = step.y
        ds, proj = block.downsample, None
        if ds is None:
            s = x
        elif isinstance(ds, ZeroPadShortcut):
            s = zero_pad_forward(ds, x)
        else:
            proj = self._step(ds[0], ds[1], x, relu=False)
            s = proj.y
        return _BlockTape(block, gate, x, body, proj, F.relu(h + gate * s))

    def _block_backward(self, tape: _BlockTape, dh: Tensor) -> Tensor:
        """dS/d(block input) from dS/d(block output)."""
        dsum = relu_backward(dh, tape.h)  # dS/d(F + g*S)
        d = dsum
        for step in reversed(tape.body):
            d = self._step_backward(step, d)
        ds_out = tape.gate * dsum  # dS/dS(x)
        ds = tape.block.downsample
        if ds is None:
            short = ds_out
        elif isinstance(ds, ZeroPadShortcut):
            short = zero_pad_backward(ds, ds_out, tape.x)
        else:
            assert tape.proj is not None
            short = self._step_backward(tape.proj, ds_out)
        return d + short

    @torch.no_grad()
    def forward(self, image: Tensor, gates: Tensor, target: Tensor) -> tuple[Tensor, ...]:
        """(logits, target_class, cam:<layer>..., grad_image) for ``image`` (N,3,H,W), ``gates``, ``target`` (N,)."""
        m = self.model
        stem = self._step(m.conv1, m.bn1, image, relu=True)
        a0 = stem.y
        x = m.maxpool(a0) if m.maxpool is not None else a0  # the indices only where the image's gradient needs them
        acts = [x]  # the stem's output, then every block's
        tapes: list[_BlockTape] = []
        for i, (_, block) in enumerate(m.named_blocks()):
            tapes.append(self._block_forward(block, x, gates[i]))
            x = tapes[-1].h
            acts.append(x)
        pooled = torch.flatten(m.avgpool(x), 1)  # (N, C)
        logits = F.linear(pooled, m.fc.weight, m.fc.bias)  # (N, K)
        target = torch.where(target < 0, logits.argmax(dim=1), target)  # -1: the predicted class

        # dS/dlogits is one-hot: dS/dpooled is the target's row of the fc weight.
        d = batch_expand(m.fc.weight.index_select(0, target)[:, :, None, None], x.shape[2], x.shape[3]) / (
            int(x.shape[2]) * int(x.shape[3])
        )
        grads = [d]  # dS/d(each layer's output), last layer first
        for tape in reversed(tapes):
            d = self._block_backward(tape, d)
            grads.append(d)
        grads.reverse()
        cams = [CAMS[method](a, g) for a, g in zip(acts, grads, strict=True) for method in CAM_METHODS]
        if m.maxpool is not None:
            d = maxpool_backward(m.maxpool, a0, d)
        grad_image = self._step_backward(stem, d)
        return (logits, target, *cams, grad_image)


def _level_layers(model: ResNet) -> list[tuple[int, list[str]]]:
    """(position, layers) of the levels with maps, deepest first: each stage's blocks but the net's last, the stem."""
    blocks = [path for path, _ in model.named_blocks()]
    position = {path: i + 2 for i, path in enumerate(blocks)}
    out = []
    for s in range(len(model.stages()), 0, -1):
        group = [p for p in blocks[:-1] if p.startswith(f"layer{s}.")]
        if group:
            out.append((max(position[p] for p in group), group))
    return [*out, (1, [stem_layer(model)])]


def _cam_outputs(layers: list[str]) -> list[str]:
    """Every method's map at ``layers``."""
    return [cam_output(layer, method) for layer in layers for method in CAM_METHODS]


def levels(model: ResNet) -> list[Level]:
    """The explain graph's levels (see :mod:`app.nets.levels`), deepest first after the head (the last block).

    Positions: 0 the image (``grad_image``), 1 the stem, 1 + i block i (from 1): a run with ``depth`` = p
    fills every output at position >= p, and the CAM at position p costs the backward down to that layer.
    One level per stage (its blocks but the last block of the net), then the stem, then the image.
    """
    return [*(Level(p, _cam_outputs(group)) for p, group in _level_layers(model)), Level(0, ["grad_image"])]


def method_groups(model: ResNet) -> list[list[str]]:
    """The layers whose maps one ``If`` per method computes: the head's (the last block), then each level's."""
    return [[path for path, _ in model.named_blocks()][-1:], *(group for _, group in _level_layers(model))]


def export_explain_graph(model: ResNet, bn_mode: str, path: Path, *, input_size: int | None = None) -> list[str]:
    """Write the ExplainGraph of ``model`` as one self-contained .onnx file; return its output names.

    Every input but ``gates`` and every output has a dynamic batch axis; the spatial size is fixed at
    ``input_size`` (the spec's by default). The outputs are nested in :func:`levels`, picked by the
    int64 scalar input ``depth`` (0: every output), and each layer's maps are computed for one method only,
    the int64 scalar input ``method`` (its index in ``CAM_METHODS``; ``app.specs.NO_CAM`` for none).
    """
    graph = ExplainGraph(model, bn_mode)
    names = graph.output_names()
    path = Path(path)
    export_tape_graph(graph, model, names, graph.batch_outputs(), path, input_size, keep_bn=True)
    proto = onnx.load(str(path))
    for group in method_groups(model):
        select_outputs(proto.graph, METHOD_INPUT, [[cam_output(lay, m) for lay in group] for m in CAM_METHODS])
    nest_levels(proto.graph, levels(model))
    onnx.save(proto, str(path))
    return names
