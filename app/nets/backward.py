"""Hand-written backward pass of a ResNet: loss, logits and gradient norms in one ONNX graph.

``torch.autograd`` does not export to ONNX, so :class:`GradientGraph` runs its own forward pass
(with the ResNet's weights, matching ``ResNet.forward`` numerically), keeps what the backward
needs, and applies the chain rule layer by layer: cross-entropy, fc, global average pooling,
then every block from the last to the first (gated sum, ReLU, BN in either mode, convolutions,
projection or zero-pad shortcuts), and finally the stem (max pool, ReLU, BN, conv). Everything is
plain tensor arithmetic, convolutions and one scatter, so the graph exports with the TorchScript
exporter at opset 17 and runs in ONNX Runtime.

Outputs are the mean cross-entropy ``loss``, the ``logits`` and, for the gradients named
``grad_in:<block>``, ``grad_out:<block>``, ``grad_act:<conv|fc>``, ``grad_w:<conv|bn|fc>`` and
``grad_b:<bn>``, their squared L2 norm (over the whole batch) in parts: a small float32 array (per
channel, per row, or per pixel of a Gram matrix) whose total is the squared norm. The runtime
finishes each norm in float64 (``app.runtime.gradients.finish_norms``), which keeps ~230 tiny
reductions and square roots out of the graph and every float32 accumulation short.
:meth:`GradientGraph.output_names` gives the order.

How the graph is kept cheap (BN scales folded into kernels, Gram matrices for the last stage) is
written up in docs/performance.md, "The gradient graph".
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from app.nets.backward_ops import (
    BNCache,
    batch_gemm,
    bn_batch_backward,
    bn_forward,
    bn_scale,
    channel_view,
    conv_forward,
    conv_input_grad,
    gram_parts,
    gram_sumsq,
    im2col,
    maxpool_backward,
    maxpool_forward,
    relu_backward,
    sumsq,
    zero_pad_backward,
    zero_pad_forward,
)
from app.nets.resnet import ResNet, ZeroPadShortcut, _Block
from app.specs import BN_MODES

OPSET = 17


@dataclass
class _Layer:
    """One conv + BN (+ ReLU) step of a forward pass, as saved for the backward."""

    conv_path: str
    bn_path: str
    conv: nn.Conv2d
    bn: nn.BatchNorm2d
    x: Tensor  # conv input
    cache: BNCache | None  # batch statistics only
    z: Tensor | None  # the conv output, kept (running statistics) where dL/dgamma is cheaper from it
    y: Tensor  # the step's output: relu(BN output) when relu is set (the mask is y > 0 either way)
    relu: bool
    gram: bool  # the weight-gradient norm from Gram matrices (see gram_sumsq), not from dL/dW


@dataclass
class _BlockTape:
    """Saved tensors of one residual block: its body, shortcut and gated sum."""

    path: str
    block: _Block
    gate: Tensor  # () float
    x: Tensor  # block input
    body: list[_Layer]
    proj: _Layer | None  # projection shortcut (option B), None for identity or zero-pad
    h: Tensor  # block output relu(F + g * S)


@dataclass
class _Outputs:
    """The graph's outputs; per-channel arithmetic of every running-BN layer is batched to the end.

    Done per layer it would be ~6 tiny nodes each (scalings, dL/dgamma, squares), and ONNX Runtime's
    cost per node made those a few percent of a ResNet-50 backward.
    """

    out: dict[str, Tensor]
    scaled: list[tuple[str, Tensor, Tensor]] = field(default_factory=list)  # (output, parts, constant factor)
    bn: list[tuple[str, Tensor, Tensor, nn.BatchNorm2d]] = field(default_factory=list)  # (path, sum dy*z, dbeta, bn)

    def put(self, name: str, parts: Tensor, factor: Tensor | None = None) -> None:
        """Record output ``name`` = ``parts * factor`` (the product taken in :meth:`finish`)."""
        if factor is None:
            self.out[name] = parts
        else:
            self.scaled.append((name, parts, factor))

    def finish(self) -> None:
        """Record every scaled output, and the squared dL/dgamma and dL/dbeta of each running BN."""
        out = self.out
        if self.scaled:
            names, parts, factors = zip(*self.scaled, strict=True)
            prod = torch.cat(parts) * torch.cat(factors)
            for name, t in zip(names, prod.split([int(p.shape[0]) for p in parts]), strict=True):
                out[name] = t
        if self.bn:
            paths, dy_z, dbeta, bns = zip(*self.bn, strict=True)
            mean = torch.cat([bn.running_mean for bn in bns])  # constants, folded at export
            invstd = torch.cat([bn_scale(bn)[0] for bn in bns])
            db = torch.cat(dbeta)
            dgamma = (torch.cat(dy_z) - mean * db) * invstd  # sum(dy * x_hat), x_hat = (z - mean) * invstd
            sizes = [int(t.shape[0]) for t in dbeta]
            for path, g, b in zip(paths, dgamma.square().split(sizes), db.square().split(sizes), strict=True):
                out[f"grad_w:{path}"] = g
                out[f"grad_b:{path}"] = b


class GradientGraph(nn.Module):
    """Loss and gradient norms of a ResNet for one target class per image."""

    def __init__(self, model: ResNet, bn_mode: str) -> None:
        super().__init__()
        if bn_mode not in BN_MODES:
            raise ValueError(f"bn mode must be one of {BN_MODES}, got {bn_mode!r}")
        self.model = model
        self.bn_mode = bn_mode
        self._names = self._build_names()

    def _build_names(self) -> list[str]:
        """Output names in forward order, checked to cover every conv and BN module once."""
        names = ["loss", "logits"]

        def layer(conv_path: str, bn_path: str) -> None:
            names.extend([f"grad_act:{conv_path}", f"grad_w:{conv_path}", f"grad_w:{bn_path}", f"grad_b:{bn_path}"])

        layer("conv1", "bn1")
        for path, block in self.model.named_blocks():
            names.extend([f"grad_in:{path}", f"grad_out:{path}"])
            for conv_name, bn_name in self._body_names(block):
                layer(f"{path}.{conv_name}", f"{path}.{bn_name}")
            if isinstance(block.downsample, nn.Sequential):
                layer(f"{path}.downsample.0", f"{path}.downsample.1")
        names.extend(["grad_act:fc", "grad_w:fc"])
        modules = dict(self.model.named_modules())
        convs = {p for p, m in modules.items() if isinstance(m, nn.Conv2d)}
        bns = {p for p, m in modules.items() if isinstance(m, nn.BatchNorm2d)}
        covered = {n.split(":", 1)[1] for n in names if n.startswith(("grad_act:", "grad_b:"))} - {"fc"}
        if covered != convs | bns or len(set(names)) != len(names):
            raise ValueError("GradientGraph does not cover this model's conv and BN modules")
        return names

    @staticmethod
    def _body_names(block: _Block) -> list[tuple[str, str]]:
        """(conv, bn) attribute names of a block's residual branch F, in order."""
        depth = 3 if hasattr(block, "conv3") else 2
        return [(f"conv{k}", f"bn{k}") for k in range(1, depth + 1)]

    def output_names(self) -> list[str]:
        """Names of the tensors ``forward`` returns, in order."""
        return list(self._names)

    def _layer(
        self, conv_path: str, bn_path: str, conv: nn.Conv2d, bn: nn.BatchNorm2d, x: Tensor, relu: bool
    ) -> _Layer:
        """Forward one conv + BN (+ ReLU) step, saving what its backward needs.

        Only the ReLU's output is kept (its mask is the same), so ONNX Runtime can fuse the ReLU
        into the BN instead of keeping both tensors.
        """
        z = conv_forward(conv, x)
        y, cache = bn_forward(bn, z, self.bn_mode)
        # Per image: P output pixels, a Cout x K weight. The weight-gradient norm from Gram
        # matrices where that is (well) cheaper than forming dL/dW; with running statistics,
        # dL/dgamma from z where z is smaller than dL/dW (else from dL/dW; see the module docstring).
        pixels, cout, k = int(z.shape[2]) * int(z.shape[3]), conv.out_channels, conv.weight[0].numel()
        gram = 4 * pixels * (cout + k) < cout * k
        keep_z = self.bn_mode == "running" and (gram or k > pixels)
        return _Layer(
            conv_path, bn_path, conv, bn, x, cache, z if keep_z else None, F.relu(y) if relu else y, relu, gram
        )

    def _layer_backward(
        self, layer: _Layer, dout: Tensor, ones: Tensor, out: _Outputs, need_input: bool
    ) -> Tensor | None:
        """Backward through ReLU (if any), BN and conv; records norms, returns dL/d(conv input) if needed."""
        dy = relu_backward(dout, layer.y) if layer.relu else dout
        bn, conv, cols = layer.bn, layer.conv, im2col(layer.conv, layer.x)
        if layer.cache is not None:  # batch statistics
            dz, dgamma, dbeta = bn_batch_backward(bn, layer.cache, dy)
            scale = sq = None
            out.put(f"grad_w:{layer.bn_path}", dgamma.square())
            out.put(f"grad_b:{layer.bn_path}", dbeta.square())
        else:  # running statistics: dL/dz = scale * dy is never formed (see the module docstring)
            dz, scale = dy, bn_scale(bn)[1]  # scale (C,) is a constant
            sq = scale.square()
        out.put(f"grad_act:{layer.conv_path}", sumsq(dz), sq)
        if layer.gram:
            out.put(f"grad_w:{layer.conv_path}", gram_sumsq(dz if scale is None else dz * channel_view(scale), cols))
        else:
            g = batch_gemm(dz, cols, ones)  # (Cout, K): dL/dW, or dL/dW / scale
            out.put(f"grad_w:{layer.conv_path}", sumsq(g), sq)
        if layer.cache is None:
            if layer.z is not None:
                dy_z = (dy * layer.z).sum(dim=(0, 2, 3))  # (C,): sum over images and pixels of dy * z
            else:
                dy_z = (conv.weight * g.view_as(conv.weight)).sum(dim=(1, 2, 3))  # the same sum, from g
            out.bn.append((layer.bn_path, dy_z, dy.sum(dim=(0, 2, 3)), bn))
        return conv_input_grad(conv, dz, layer.x, scale) if need_input else None

    def _block_forward(self, path: str, block: _Block, x: Tensor, gate: Tensor) -> _BlockTape:
        """Forward one residual block, H = relu(F(x) + g * S(x)), keeping its tape."""
        body: list[_Layer] = []
        names = self._body_names(block)
        h = x
        for k, (conv_name, bn_name) in enumerate(names):
            relu = k < len(names) - 1
            layer = self._layer(
                f"{path}.{conv_name}", f"{path}.{bn_name}", getattr(block, conv_name), getattr(block, bn_name), h, relu
            )
            body.append(layer)
            h = layer.y
        ds = block.downsample
        proj: _Layer | None = None
        if ds is None:
            s = x
        elif isinstance(ds, ZeroPadShortcut):
            s = zero_pad_forward(ds, x)
        else:
            proj = self._layer(f"{path}.downsample.0", f"{path}.downsample.1", ds[0], ds[1], x, False)
            s = proj.y
        out = F.relu(h + gate * s)  # (N, C, H', W')
        return _BlockTape(path, block, gate, x, body, proj, out)

    def _block_backward(
        self, tape: _BlockTape, dh: Tensor, dh_parts: Tensor, ones: Tensor, out: _Outputs
    ) -> tuple[Tensor, Tensor]:
        """Backward of one block from dL/dH and its squared norm in parts; records norms, returns dL/dx and its parts.

        A block's output is the next block's input: ``dh_parts`` are that block's dL/dx parts.
        """
        out.put(f"grad_out:{tape.path}", dh_parts)
        dsum = relu_backward(dh, tape.h)  # dL/d(F + g*S)
        d = dsum
        for layer in reversed(tape.body):
            d = self._layer_backward(layer, d, ones, out, need_input=True)
        ds_out = tape.gate * dsum  # dL/dS
        ds = tape.block.downsample
        if ds is None:
            dx_short = ds_out
        elif isinstance(ds, ZeroPadShortcut):
            dx_short = zero_pad_backward(ds, ds_out, tape.x)
        else:
            assert tape.proj is not None
            dx_short = self._layer_backward(tape.proj, ds_out, ones, out, need_input=True)
        dx = d + dx_short  # (N, Cin, H, W)
        dx_parts = sumsq(dx)
        out.put(f"grad_in:{tape.path}", dx_parts)
        return dx, dx_parts

    @torch.no_grad()
    def forward(self, image: Tensor, gates: Tensor, target: Tensor) -> tuple[Tensor, ...]:
        """(loss, logits, *gradient norms) for ``image`` (N,3,H,W), ``gates`` (B,), ``target`` (N,) int64."""
        m = self.model
        # Forward, keeping the tape.
        stem = self._layer("conv1", "bn1", m.conv1, m.bn1, image, relu=True)
        a0 = stem.y  # relu(bn1(conv1(image))): (N, C0, H0, W0)
        x, pool_idx = maxpool_forward(m.maxpool, a0) if m.maxpool is not None else (a0, None)
        tapes: list[_BlockTape] = []
        for i, (path, block) in enumerate(m.named_blocks()):
            tape = self._block_forward(path, block, x, gates[i])
            tapes.append(tape)
            x = tape.h
        pooled = torch.flatten(m.avgpool(x), 1)  # (N, C)
        logits = F.linear(pooled, m.fc.weight, m.fc.bias)  # (N, K)
        log_p = F.log_softmax(logits, dim=1)
        target = torch.where(target < 0, logits.argmax(dim=1), target)  # -1: the predicted class
        classes = torch.arange(logits.shape[1], device=target.device)
        onehot = (classes.unsqueeze(0) == target.unsqueeze(1)).to(logits.dtype)  # (N, K)
        loss = -(log_p * onehot).sum(dim=1).mean()

        # Backward.
        out = _Outputs({"loss": loss, "logits": logits})
        n = torch.ones_like(log_p[:, :1]).sum()  # batch size as a tensor: the batch axis is dynamic
        dlogits = (log_p.exp() - onehot) / n  # (N, K), d mean-CE / d logits
        out.put("grad_act:fc", sumsq(dlogits))
        out.put("grad_w:fc", gram_parts(dlogits, pooled))  # ||dlogits^T pooled||^2 without the (K, C) product
        dpooled = dlogits @ m.fc.weight  # (N, C)
        height, width = int(x.shape[2]), int(x.shape[3])
        d = dpooled[:, :, None, None].expand_as(x) / (height * width)  # (N, C, H, W)
        ones = torch.ones_like(dlogits[:, :1]).t()  # (1, N): sums weight gradients over images
        d_parts = sumsq(d)
        for tape in reversed(tapes):
            d, d_parts = self._block_backward(tape, d, d_parts, ones, out)
        if m.maxpool is not None:
            d = maxpool_backward(m.maxpool, a0, d, pool_idx)
        self._layer_backward(stem, d, ones, out, need_input=False)
        out.finish()
        return tuple(out.out[name] for name in self._names)


def export_gradient_graph(model: ResNet, bn_mode: str, path: Path, *, input_size: int | None = None) -> list[str]:
    """Write the GradientGraph of ``model`` as one self-contained .onnx file; return its output names.

    ``image`` and ``target`` (and ``logits``) have a dynamic batch axis; the spatial size is fixed
    at ``input_size`` (the spec's by default).
    """
    graph = GradientGraph(model, bn_mode)
    names = graph.output_names()
    export_tape_graph(graph, model, names, ["logits"], Path(path), input_size)
    return names


def export_tape_graph(
    graph: nn.Module,
    model: ResNet,
    names: list[str],
    batch_outputs: list[str],
    path: Path,
    input_size: int | None,
    keep_bn: bool = False,
) -> None:
    """Export a hand-written backward module of ``model`` (inputs image, gates, target) to one .onnx file.

    ``image``, ``target`` and the outputs ``batch_outputs`` get a dynamic batch axis; the spatial size
    is fixed at ``input_size`` (the spec's by default). ``keep_bn`` keeps the exporter from folding a
    running-statistics BN into the conv before it (a folded copy of the kernel in the file): ONNX
    Runtime folds it when it loads the graph.
    """
    size = input_size or model.spec.input_size
    image = torch.zeros(2, 3, size, size)
    gates = torch.ones(model.spec.num_blocks)
    target = torch.zeros(2, dtype=torch.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic = {n: {0: "batch"} for n in ("image", "target", *batch_outputs)}
    # The exporter puts the wrapper in eval mode and back into its (train) mode afterwards, which
    # would reach into ``model``: note every module's flag and restore it.
    modes = [(m, m.training) for m in model.modules()]
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shapes baked in on purpose
            warnings.filterwarnings("ignore", "You are using the legacy TorchScript", DeprecationWarning)
            # The kernel flips (Slice with step -1) stay in the graph on purpose: ONNX Runtime folds
            # them when it loads the graph, and the file does not carry a flipped copy of each weight.
            warnings.filterwarnings("ignore", "Constant folding - Only steps=1", UserWarning)
            # PRESERVE on modules in eval mode exports inference BN; folding constants is what we want.
            warnings.filterwarnings("ignore", "It is recommended that constant folding be turned off", UserWarning)
            torch.onnx.export(
                graph,
                (image, gates, target),
                str(path),
                input_names=["image", "gates", "target"],
                output_names=names,
                dynamic_axes=dynamic,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
                **({"training": torch.onnx.TrainingMode.PRESERVE} if keep_bn else {}),
            )
    finally:
        for m, training in modes:
            m.training = training
