"""Class activation maps and the input gradient of a ResNet in one ONNX graph (the explain graph).

:class:`ExplainGraph` runs the forward pass with a tape (the layers of :mod:`app.nets.backward_ops`,
numerically the ResNet's own forward), then the backward of the class score
S = sum_n logits[n, target_n] (before the softmax, as the Grad-CAM papers define it): input gradients
only, no weight gradients, through every block (gated sum, ReLU, BN with running or batch statistics,
convolutions, projection or zero-pad shortcuts), the max pool and the stem, down to the image.

At every layer L (the stem's tap, ``relu`` or ``maxpool``, and every block's output), with A its
activation (N, C, h, w) and G = dS/dA, the output ``cam:<L>`` (N, 4, h, w) holds, in
``app.specs.CAM_METHODS`` order:

* Grad-CAM (Selvaraju et al. 2017): w_k = mean_ij G_kij, map = ReLU(sum_k w_k A_k);
* Grad-CAM++ (Chattopadhay et al. 2018, the closed form for the exponential of the score):
  alpha = G^2 / (2 G^2 + sum_ij(A_k) G^3) (1 where that denominator is 0),
  w_k = sum_ij alpha_kij ReLU(G_kij), map = ReLU(sum_k w_k A_k) (computed as :func:`cam_maps` says);
* HiResCAM (Draelos & Carin 2020): map = ReLU(sum_k G_k * A_k);
* LayerCAM (Jiang et al. 2021): map = ReLU(sum_k ReLU(G_k) * A_k).

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
    bn_batch_backward,
    bn_forward,
    bn_scale,
    conv_forward,
    maxpool_backward,
    maxpool_forward,
    relu_backward,
    shared_kernel_input_grad,
    zero_pad_backward,
    zero_pad_forward,
)
from app.nets.levels import Level, nest_levels
from app.nets.resnet import ResNet, ZeroPadShortcut, _Block
from app.specs import BN_MODES


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


def cam_maps(a: Tensor, g: Tensor) -> Tensor:
    """The four maps of ``app.specs.CAM_METHODS`` (N, 4, h, w) from activations ``a`` >= 0 and their gradient ``g``.

    Grad-CAM++'s alpha * ReLU(G) is written as ReLU(G) / (2 + sum_ij(A) ReLU(G)): where G > 0 that is
    G^2 / (2 G^2 + sum_ij(A) G^3) divided through by G^2, and where G <= 0 both are 0 (the denominator
    2 > 0, since A >= 0 at every layer here: block outputs and the stem are ReLU outputs). It is half the
    work, and exact where float32 G^2 and G^3 would underflow to 0 (the tiny gradients of deep plain nets).
    """
    c, h, w = int(a.shape[1]), int(a.shape[2]), int(a.shape[3])
    pos = F.relu(g)
    w_gradcam = g.mean(dim=(2, 3))  # (N, C)
    w_plusplus = (pos / (pos * a.sum(dim=(2, 3), keepdim=True) + 2.0)).sum(dim=(2, 3))  # (N, C)
    weights = torch.stack([w_gradcam, w_plusplus], dim=1)  # (N, 2, C)
    weighted = torch.matmul(weights, a.reshape(-1, c, h * w)).reshape(-1, 2, h, w)  # sum_k w_k A_k
    hires = (g * a).sum(dim=1, keepdim=True)  # (N, 1, h, w)
    layer = (pos * a).sum(dim=1, keepdim=True)
    return F.relu(torch.cat([weighted, hires, layer], dim=1))


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
        return ["logits", "target_class", *(f"cam:{layer}" for layer in self.layers), "grad_image"]

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
        x, pool_idx = maxpool_forward(m.maxpool, a0) if m.maxpool is not None else (a0, None)
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
        d = m.fc.weight.index_select(0, target)[:, :, None, None].expand_as(x) / (int(x.shape[2]) * int(x.shape[3]))
        grads = [d]  # dS/d(each layer's output), last layer first
        for tape in reversed(tapes):
            d = self._block_backward(tape, d)
            grads.append(d)
        grads.reverse()
        cams = [cam_maps(a, g) for a, g in zip(acts, grads, strict=True)]
        if m.maxpool is not None:
            d = maxpool_backward(m.maxpool, a0, d, pool_idx)
        grad_image = self._step_backward(stem, d)
        return (logits, target, *cams, grad_image)


def levels(model: ResNet) -> list[Level]:
    """The explain graph's levels (see :mod:`app.nets.levels`), deepest first after the head (the last block).

    Positions: 0 the image (``grad_image``), 1 the stem, 1 + i block i (from 1): a run with ``depth`` = p
    fills every output at position >= p, and the CAM at position p costs the backward down to that layer.
    One level per stage (its blocks but the last block of the net), then the stem, then the image.
    """
    blocks = [path for path, _ in model.named_blocks()]
    position = {path: i + 2 for i, path in enumerate(blocks)}
    out = []
    for s in range(len(model.stages()), 0, -1):
        cams = [f"cam:{p}" for p in blocks[:-1] if p.startswith(f"layer{s}.")]
        if cams:
            out.append(Level(max(position[c[4:]] for c in cams), cams))
    return [*out, Level(1, [f"cam:{stem_layer(model)}"]), Level(0, ["grad_image"])]


def export_explain_graph(model: ResNet, bn_mode: str, path: Path, *, input_size: int | None = None) -> list[str]:
    """Write the ExplainGraph of ``model`` as one self-contained .onnx file; return its output names.

    Every input but ``gates`` and every output has a dynamic batch axis; the spatial size is fixed at
    ``input_size`` (the spec's by default). The outputs are nested in :func:`levels`, picked by the
    int64 scalar input ``depth`` (0: every output).
    """
    graph = ExplainGraph(model, bn_mode)
    names = graph.output_names()
    path = Path(path)
    export_tape_graph(graph, model, names, graph.batch_outputs(), path, input_size, keep_bn=True)
    proto = onnx.load(str(path))
    nest_levels(proto.graph, levels(model))
    onnx.save(proto, str(path))
    return names
