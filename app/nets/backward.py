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

from app.nets.resnet import ResNet, ZeroPadShortcut, _Block
from app.specs import BN_MODES

OPSET = 17


@dataclass
class _BNCache:
    """What the backward of a BN with batch statistics needs: x_hat and 1/std (1, C, 1, 1)."""

    x_hat: Tensor  # (N, C, H, W)
    invstd: Tensor


@dataclass
class _Layer:
    """One conv + BN (+ ReLU) step of a forward pass, as saved for the backward."""

    conv_path: str
    bn_path: str
    conv: nn.Conv2d
    bn: nn.BatchNorm2d
    x: Tensor  # conv input
    cache: _BNCache | None  # batch statistics only
    z: Tensor | None  # the conv output, kept (running statistics) where dL/dgamma is cheaper from it
    y: Tensor  # the step's output: relu(BN output) when relu is set (the mask is y > 0 either way)
    relu: bool
    gram: bool  # the weight-gradient norm from Gram matrices (see _gram_sumsq), not from dL/dW


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
            invstd = torch.cat([_bn_scale(bn)[0] for bn in bns])
            db = torch.cat(dbeta)
            dgamma = (torch.cat(dy_z) - mean * db) * invstd  # sum(dy * x_hat), x_hat = (z - mean) * invstd
            sizes = [int(t.shape[0]) for t in dbeta]
            for path, g, b in zip(paths, dgamma.square().split(sizes), db.square().split(sizes), strict=True):
                out[f"grad_w:{path}"] = g
                out[f"grad_b:{path}"] = b


def _sumsq(t: Tensor) -> Tensor:
    """The squared L2 norm of ``t`` in parts: per channel (C,) of an (N, C, H, W), per row, or per element.

    ``torch.linalg.vector_norm`` (eager, CPU) and ONNX Runtime's one-shot ``ReduceSum`` both drift
    by up to ~1e-4 relative on tensors of a few million elements; short per-channel sums here and
    a float64 total in the runtime keep every float32 accumulation short. (Square, then ReduceSum:
    ONNX Runtime's ReduceSumSquare is 2-3x slower on CPU.)
    """
    sq = t.square()
    if sq.dim() == 4:
        return sq.sum(dim=(0, 2, 3))  # (C,): reduced over named axes, no shape arithmetic in the graph
    if sq.dim() == 2:
        return sq.sum(dim=1)  # (rows,)
    return sq


def _channel(v: Tensor) -> Tensor:
    """A per-channel vector (C,) as a broadcastable (1, C, 1, 1)."""
    return v.view(1, -1, 1, 1)


def _relu_backward(dy: Tensor, y: Tensor) -> Tensor:
    """Gradient through a ReLU whose input (or output) is ``y``: keep it where y > 0.

    A product with the 0/1 mask, not ``torch.where``: ONNX Runtime's Where with a scalar branch
    is ~10x slower than Greater, Cast and Mul together on the same tensor.
    """
    return dy * (y > 0).to(dy.dtype)


def _conv_forward(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """The bias-free convolution of ``conv`` applied to ``x``."""
    return F.conv2d(x, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)


def _conv_input_grad(conv: nn.Conv2d, dz: Tensor, x: Tensor, scale: Tensor | None = None) -> Tensor:
    """dL/dx of a convolution for output gradient ``scale * dz``: the transposed convolution, padded out to x's shape.

    ``scale`` (Cout,), a constant, is folded into the kernel.
    """
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    if (sh, sw) == (1, 1) and kh - 1 - ph >= 0 and kw - 1 - pw >= 0:
        # Stride 1: the transposed convolution is a plain convolution with the kernel flipped and
        # its in/out channels swapped (ONNX Runtime's Conv is much faster than its ConvTranspose).
        w = conv.weight.flip(2, 3).transpose(0, 1)  # (Cin, Cout, kh, kw), a constant
        w = w if scale is None else w * scale.view(1, -1, 1, 1)
        return F.conv2d(dz, w, None, 1, (kh - 1 - ph, kw - 1 - pw))  # (N, Cin, H, W)
    w = conv.weight if scale is None else conv.weight * scale.view(-1, 1, 1, 1)  # (Cout, Cin, kh, kw)
    if (kh, kw) == (1, 1) and (ph, pw) == (0, 0) and sh == sw:
        # Strided 1x1 (projection shortcut): a 1x1 conv with the kernel transposed, then the
        # results spread back to the sampled positions.
        d = F.conv2d(dz, w.transpose(0, 1))  # (N, Cin, OH, OW)
        return _spread(d, sh, int(x.shape[2]), int(x.shape[3]))
    oh, ow = dz.shape[2], dz.shape[3]
    # A strided conv drops the last rows/columns when (H + 2p - k) % s != 0: restore them.
    pad_h = int(x.shape[2]) - ((int(oh) - 1) * sh - 2 * ph + kh)
    pad_w = int(x.shape[3]) - ((int(ow) - 1) * sw - 2 * pw + kw)
    return F.conv_transpose2d(dz, w, None, (sh, sw), (ph, pw), (pad_h, pad_w))  # (N, Cin, H, W)


def _pixels(t: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, C, H*W), with the sizes written into the graph (no shape arithmetic)."""
    return t.reshape(-1, int(t.shape[1]), int(t.shape[2]) * int(t.shape[3]))


def _batch_gemm(a: Tensor, b: Tensor, ones: Tensor) -> Tensor:
    """sum over images and pixels of a[n, i, p] * b[n, j, p]: (N, I, H, W), (N, J, H, W) -> (I, J).

    One GEMM per image, then the images summed by a product with ``ones`` (1, N): ONNX Runtime
    sums a (N, I, J) tensor over its first axis (or transposes images next to pixels) far slower.
    """
    i, j = int(a.shape[1]), int(b.shape[1])
    prod = torch.matmul(_pixels(a), _pixels(b).transpose(1, 2))  # (N, I, J)
    return torch.matmul(ones, prod.reshape(-1, i * j)).reshape(i, j)  # (I, J)


def _im2col(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """The im2col matrix of a convolution's input, (N, Cin*kh*kw, OH, OW): z = W (Cout, Cin*kh*kw) times it."""
    (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
    if (kh, kw) == (1, 1) and conv.padding == (0, 0):
        return x[:, :, ::sh, ::sw]  # a 1x1 conv is a matmul per (sampled) pixel
    # One grouped convolution whose kernels pick single taps: channel c * kh*kw + k is input
    # channel c shifted by kernel offset k (padding and stride included). Exact.
    cin, taps = int(x.shape[1]), kh * kw
    pick = torch.eye(taps, dtype=x.dtype).view(taps, 1, kh, kw).repeat(cin, 1, 1, 1)  # (Cin*kh*kw, 1, kh, kw)
    return F.conv2d(x, pick, None, conv.stride, conv.padding, conv.dilation, cin)


def _rows(t: Tensor) -> Tensor:
    """(N, C, H, W) -> (N*H*W, C): one row per image and pixel."""
    return _pixels(t).transpose(1, 2).reshape(-1, int(t.shape[1]))


def _gram_sumsq(a: Tensor, b: Tensor) -> Tensor:
    """||G||^2 in parts for G = sum over images and pixels of a[n, :, p] b[n, :, p]^T, G never formed.

    ||G||_F^2 = sum_pq (A * B)_pq with the Gram matrices A = a^T a and B = b^T b over the N*P
    pixels: (I + J) (NP)^2 multiply-adds instead of the I J NP of G itself, far fewer where
    there are few pixels and many channels (ResNet-50's last stage: 7x7 pixels, 512 x 4608 G).
    Measured in float32 against float64 on such shapes: 1e-8 relative.
    """
    return _gram_parts(_rows(a), _rows(b))


def _gram_parts(ra: Tensor, rb: Tensor) -> Tensor:
    """||ra^T rb||^2 in parts (one per row) from the Gram matrices of ``ra`` (R, I) and ``rb`` (R, J)."""
    return (torch.matmul(ra, ra.t()) * torch.matmul(rb, rb.t())).sum(dim=1)  # (R,)


def _bn_forward(bn: nn.BatchNorm2d, z: Tensor, mode: str) -> tuple[Tensor, _BNCache | None]:
    """BN of ``z`` with running or current-batch statistics, exactly as ``resnet.batch_norm``."""
    if mode == "running":
        y = F.batch_norm(z, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        return y, None  # the backward needs only constants
    mu = z.mean(dim=(0, 2, 3), keepdim=True)  # (1, C, 1, 1)
    var = ((z - mu) ** 2).mean(dim=(0, 2, 3), keepdim=True)  # population variance
    invstd = torch.rsqrt(var + bn.eps)
    x_hat = (z - mu) * invstd
    y = x_hat * _channel(bn.weight) + _channel(bn.bias)
    return y, _BNCache(x_hat, invstd)


def _bn_scale(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """(1/std, gamma/std) of a BN with running statistics, each (C,)."""
    invstd = torch.rsqrt(bn.running_var + bn.eps)
    return invstd, bn.weight * invstd


def _bn_batch_backward(bn: nn.BatchNorm2d, cache: _BNCache, dy: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(dL/dz, dL/dgamma, dL/dbeta) of a BN with batch statistics."""
    dbeta = dy.sum(dim=(0, 2, 3))  # (C,)
    dgamma = (dy * cache.x_hat).sum(dim=(0, 2, 3))  # (C,)
    # Batch statistics depend on z too: dz = gamma*invstd * (dy - mean(dy) - x_hat * mean(dy*x_hat)).
    # Means instead of sums / m keep the batch size out of the graph (it is a dynamic axis).
    mean_dy = dy.mean(dim=(0, 2, 3), keepdim=True)  # (1, C, 1, 1)
    mean_dy_xhat = (dy * cache.x_hat).mean(dim=(0, 2, 3), keepdim=True)
    scale = _channel(bn.weight) * cache.invstd  # (1, C, 1, 1)
    return scale * (dy - mean_dy - cache.x_hat * mean_dy_xhat), dgamma, dbeta


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    """A pooling argument as (h, w)."""
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class _MaxPoolFlat(torch.autograd.Function):
    """Max pooling and the index of each window's maximum, flat over the whole (N, C, H, W) input.

    Exported as ONNX MaxPool with its Indices output, whose indices are flat over the whole input
    already: torch's per-plane indices would need a second MaxPool (1x1) in the graph to offset.
    """

    @staticmethod
    def forward(
        ctx: object, x: Tensor, kernel: tuple[int, int], stride: tuple[int, int], pad: tuple[int, int]
    ) -> tuple[Tensor, Tensor]:
        """(pooled, flat indices), both (N, C, OH, OW); ties go to the first maximum, as in torch."""
        y, idx = F.max_pool2d(x, kernel, stride, pad, return_indices=True)
        n, c, h, w = (int(v) for v in x.shape)
        return y, idx + torch.arange(n * c, dtype=idx.dtype).view(n, c, 1, 1) * (h * w)

    @staticmethod
    def symbolic(
        g: object, x: object, kernel: tuple[int, int], stride: tuple[int, int], pad: tuple[int, int]
    ) -> tuple[object, object]:
        """The ONNX node (row-major indices: storage_order 0)."""
        return g.op(  # type: ignore[attr-defined]
            "MaxPool", x, kernel_shape_i=list(kernel), strides_i=list(stride), pads_i=[*pad, *pad], outputs=2
        )


def _maxpool_forward(pool: nn.MaxPool2d, x: Tensor) -> tuple[Tensor, Tensor]:
    """``pool(x)`` and the flat index (into the whole of x) of every window's maximum."""
    if _pair(pool.dilation) != (1, 1) or pool.ceil_mode:
        raise ValueError("only max pooling without dilation or ceil mode is supported")
    return _MaxPoolFlat.apply(x, _pair(pool.kernel_size), _pair(pool.stride), _pair(pool.padding))


def _maxpool_backward(pool: nn.MaxPool2d, x: Tensor, dy: Tensor, idx: Tensor | None = None) -> Tensor:
    """Route each window's gradient to its argmax (torch's choice on ties), summing overlaps."""
    if idx is None:
        _, idx = _maxpool_forward(pool, x)  # (N, C, OH, OW)
    dx = torch.zeros_like(x).reshape(-1)  # (N*C*H*W,)
    # max_unpool2d does not export; scatter-add (ScatterElements, reduction "add") does.
    return dx.scatter_add(0, idx.reshape(-1), dy.reshape(-1)).view_as(x)


def _zero_pad_forward(ds: ZeroPadShortcut, x: Tensor) -> Tensor:
    """``ds(x)`` built by concatenating zeros: the same values, and unlike ``F.pad`` it keeps shapes static.

    The TorchScript exporter loses every dimension of ``F.pad``'s output (even with constant pads),
    and the weight-gradient convolutions downstream need the spatial sizes of their "kernel".
    """
    sub = x[:, :, :: ds.stride, :: ds.stride]  # (N, Cin, ceil(H/s), ceil(W/s))
    before = ds.extra // 2
    after = ds.extra - before
    zeros_before = torch.zeros_like(sub[:, :1]).expand(-1, before, -1, -1)  # (N, before, ...)
    zeros_after = torch.zeros_like(sub[:, :1]).expand(-1, after, -1, -1)
    return torch.cat([zeros_before, sub, zeros_after], dim=1)  # (N, Cin + extra, ceil(H/s), ceil(W/s))


def _spread(d: Tensor, s: int, height: int, width: int) -> Tensor:
    """(N, C, h, w) -> (N, C, height, width) with d at every s-th row and column, zeros between."""
    if s == 1:
        return d
    c, h, w = int(d.shape[1]), int(d.shape[2]), int(d.shape[3])
    zeros = torch.zeros_like(d)
    d = torch.stack([d] + [zeros] * (s - 1), dim=4).reshape(-1, c, h, w * s)  # columns interleaved
    zeros = torch.zeros_like(d)
    d = torch.stack([d] + [zeros] * (s - 1), dim=3).reshape(-1, c, h * s, w * s)  # rows interleaved
    return d if (h * s, w * s) == (height, width) else d[:, :, :height, :width]


def _zero_pad_backward(ds: ZeroPadShortcut, ds_out: Tensor, x: Tensor) -> Tensor:
    """dL/dx of the option A shortcut: drop the padded channels, put zeros between strided samples."""
    before = ds.extra // 2
    d = ds_out[:, before : before + int(x.shape[1])]  # (N, Cin, ceil(H/s), ceil(W/s))
    return _spread(d, ds.stride, int(x.shape[2]), int(x.shape[3]))  # (N, Cin, H, W)


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
        z = _conv_forward(conv, x)
        y, cache = _bn_forward(bn, z, self.bn_mode)
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
        dy = _relu_backward(dout, layer.y) if layer.relu else dout
        bn, conv, cols = layer.bn, layer.conv, _im2col(layer.conv, layer.x)
        if layer.cache is not None:  # batch statistics
            dz, dgamma, dbeta = _bn_batch_backward(bn, layer.cache, dy)
            scale = sq = None
            out.put(f"grad_w:{layer.bn_path}", dgamma.square())
            out.put(f"grad_b:{layer.bn_path}", dbeta.square())
        else:  # running statistics: dL/dz = scale * dy is never formed (see the module docstring)
            dz, scale = dy, _bn_scale(bn)[1]  # scale (C,) is a constant
            sq = scale.square()
        out.put(f"grad_act:{layer.conv_path}", _sumsq(dz), sq)
        if layer.gram:
            out.put(f"grad_w:{layer.conv_path}", _gram_sumsq(dz if scale is None else dz * _channel(scale), cols))
        else:
            g = _batch_gemm(dz, cols, ones)  # (Cout, K): dL/dW, or dL/dW / scale
            out.put(f"grad_w:{layer.conv_path}", _sumsq(g), sq)
        if layer.cache is None:
            if layer.z is not None:
                dy_z = (dy * layer.z).sum(dim=(0, 2, 3))  # (C,): sum over images and pixels of dy * z
            else:
                dy_z = (conv.weight * g.view_as(conv.weight)).sum(dim=(1, 2, 3))  # the same sum, from g
            out.bn.append((layer.bn_path, dy_z, dy.sum(dim=(0, 2, 3)), bn))
        return _conv_input_grad(conv, dz, layer.x, scale) if need_input else None

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
            s = _zero_pad_forward(ds, x)
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
        dsum = _relu_backward(dh, tape.h)  # dL/d(F + g*S)
        d = dsum
        for layer in reversed(tape.body):
            d = self._layer_backward(layer, d, ones, out, need_input=True)
        ds_out = tape.gate * dsum  # dL/dS
        ds = tape.block.downsample
        if ds is None:
            dx_short = ds_out
        elif isinstance(ds, ZeroPadShortcut):
            dx_short = _zero_pad_backward(ds, ds_out, tape.x)
        else:
            assert tape.proj is not None
            dx_short = self._layer_backward(tape.proj, ds_out, ones, out, need_input=True)
        dx = d + dx_short  # (N, Cin, H, W)
        dx_parts = _sumsq(dx)
        out.put(f"grad_in:{tape.path}", dx_parts)
        return dx, dx_parts

    @torch.no_grad()
    def forward(self, image: Tensor, gates: Tensor, target: Tensor) -> tuple[Tensor, ...]:
        """(loss, logits, *gradient norms) for ``image`` (N,3,H,W), ``gates`` (B,), ``target`` (N,) int64."""
        m = self.model
        # Forward, keeping the tape.
        stem = self._layer("conv1", "bn1", m.conv1, m.bn1, image, relu=True)
        a0 = stem.y  # relu(bn1(conv1(image))): (N, C0, H0, W0)
        x, pool_idx = _maxpool_forward(m.maxpool, a0) if m.maxpool is not None else (a0, None)
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
        out.put("grad_act:fc", _sumsq(dlogits))
        out.put("grad_w:fc", _gram_parts(dlogits, pooled))  # ||dlogits^T pooled||^2 without the (K, C) product
        dpooled = dlogits @ m.fc.weight  # (N, C)
        height, width = int(x.shape[2]), int(x.shape[3])
        d = dpooled[:, :, None, None].expand_as(x) / (height * width)  # (N, C, H, W)
        ones = torch.ones_like(dlogits[:, :1]).t()  # (1, N): sums weight gradients over images
        d_parts = _sumsq(d)
        for tape in reversed(tapes):
            d, d_parts = self._block_backward(tape, d, d_parts, ones, out)
        if m.maxpool is not None:
            d = _maxpool_backward(m.maxpool, a0, d, pool_idx)
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
    size = input_size or model.spec.input_size
    image = torch.zeros(2, 3, size, size)
    gates = torch.ones(model.spec.num_blocks)
    target = torch.zeros(2, dtype=torch.int64)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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
            torch.onnx.export(
                graph,
                (image, gates, target),
                str(path),
                input_names=["image", "gates", "target"],
                output_names=names,
                dynamic_axes={"image": {0: "batch"}, "target": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
    finally:
        for m, training in modes:
            m.training = training
    return names
