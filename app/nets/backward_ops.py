"""The layers of the hand-written backward: each one's forward as the gradient graph runs it, and its backward.

Convolutions (input gradient by a flipped-kernel convolution or a transposed one, im2col, the
weight-gradient norm by batched GEMMs or Gram matrices), batch norm with running or batch
statistics, ReLU, max pooling with flat indices, the zero-pad (option A) shortcut, and the squared
norms in parts that the graph outputs. Plain tensor arithmetic throughout, so that it exports to
ONNX; :mod:`app.nets.backward` chains them into the whole network's backward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from app.nets.resnet import ZeroPadShortcut


@dataclass
class BNCache:
    """What the backward of a BN with batch statistics needs: x_hat and 1/std (1, C, 1, 1)."""

    x_hat: Tensor  # (N, C, H, W)
    invstd: Tensor


def sumsq(t: Tensor) -> Tensor:
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


def channel_view(v: Tensor) -> Tensor:
    """A per-channel vector (C,) as a broadcastable (1, C, 1, 1)."""
    return v.view(1, -1, 1, 1)


_MASK_GAIN = 2.0**75  # twice over: 2^150 > 1 / (the smallest float32 > 0, 2^-149)


class _PositiveMask(torch.autograd.Function):
    """The 0/1 mask of y > 0, as HardSigmoid(HardSigmoid(y)) with a huge slope.

    HardSigmoid(y) = min(1, max(0, alpha y)) is exactly 0 where y <= 0 and 1 wherever alpha y >= 1; two of them
    with alpha = 2^75 reach 1 from the smallest positive float32 (and from +inf). Unlike Greater and Cast,
    ONNX Runtime runs HardSigmoid in its blocked NCHWc layout, so the mask and the product with it stay in
    the layout of the convolutions around them, with no reorder in between.
    """

    @staticmethod
    def forward(ctx: object, y: Tensor) -> Tensor:
        """The mask, computed as the graph computes it."""
        return (y * _MASK_GAIN).clamp(0.0, 1.0).mul(_MASK_GAIN).clamp(0.0, 1.0)

    @staticmethod
    def symbolic(g: object, y: object) -> object:
        """Two ONNX HardSigmoid nodes."""
        once = g.op("HardSigmoid", y, alpha_f=_MASK_GAIN, beta_f=0.0)  # type: ignore[attr-defined]
        return g.op("HardSigmoid", once, alpha_f=_MASK_GAIN, beta_f=0.0)  # type: ignore[attr-defined]


class _BatchExpand(torch.autograd.Function):
    """(N, C, 1, 1) -> (N, C, h, w), exported as an Expand to the constant shape (1, 1, h, w)."""

    @staticmethod
    def forward(ctx: object, t: Tensor, h: int, w: int) -> Tensor:
        """The broadcast view."""
        return t.expand(-1, -1, h, w)

    @staticmethod
    def symbolic(g: object, t: object, h: int, w: int) -> object:
        """One ONNX Expand with a constant shape."""
        shape = g.op("Constant", value_t=torch.tensor([1, 1, h, w], dtype=torch.int64))  # type: ignore[attr-defined]
        return g.op("Expand", t, shape)  # type: ignore[attr-defined]


def batch_expand(t: Tensor, h: int, w: int) -> Tensor:
    """``t`` (N, C, 1, 1) broadcast to (N, C, h, w), with the batch axis's symbol kept in ONNX shape inference.

    ONNX Runtime's NCHWc layout applies an elementwise Mul to two tensors only when shape inference shows their
    shapes equal. ``expand_as`` exports an Expand to a computed shape, which leaves an unknown batch axis behind
    it; every product downstream of it would fall back to NCHW, with reorders around each convolution.
    """
    return _BatchExpand.apply(t, int(h), int(w))


def relu_backward(dy: Tensor, y: Tensor) -> Tensor:
    """Gradient through a ReLU whose input (or output) is ``y``: keep it where y > 0.

    A product with the 0/1 mask (:class:`_PositiveMask`), not ``torch.where``: ONNX Runtime's Where with a
    scalar branch is ~10x slower than a mask and a Mul on the same tensor.
    """
    return dy * _PositiveMask.apply(y)


def conv_forward(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """The bias-free convolution of ``conv`` applied to ``x``."""
    return F.conv2d(x, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)


def flips_kernel(conv: nn.Conv2d) -> bool:
    """Whether :func:`conv_input_grad` runs ``conv``'s backward as a plain convolution with the kernel flipped.

    Then a constant ``scale`` folded into the kernel stays a node after the flip (a Slice the exporter does
    not fold), which ONNX Runtime folds when it loads the graph: the file carries no scaled copy of the kernel.
    """
    (kh, kw), (ph, pw) = conv.kernel_size, conv.padding
    return tuple(conv.stride) == (1, 1) and kh - 1 - ph >= 0 and kw - 1 - pw >= 0


def conv_input_grad(conv: nn.Conv2d, dz: Tensor, x: Tensor, scale: Tensor | None = None) -> Tensor:
    """dL/dx of a convolution for output gradient ``scale * dz``: the transposed convolution, padded out to x's shape.

    ``scale`` (Cout,), a constant, is folded into the kernel.
    """
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    if flips_kernel(conv):
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
    return conv_transpose_grad(conv, dz, x, w)


def shared_kernel_input_grad(conv: nn.Conv2d, dz: Tensor, x: Tensor, scale: Tensor | None = None) -> Tensor:
    """:func:`conv_input_grad` with no kernel of its own in the file: each derived from ``conv.weight`` in the graph.

    A derived kernel (transposed, scaled) starts with a flip, a Slice the exporter does not fold and ONNX
    Runtime folds when it loads the graph (a 1x1 kernel's flip changes nothing but keeps the transpose out
    of the file); strided convolutions (1x1 projections included) run as one transposed convolution of
    ``scale * dz`` with the weight as it is. The graph's file then refers to the model's own weights only.
    For a strided 1x1 that replaces a 1x1 convolution and the spread to the sampled positions
    (:func:`_spread`), whose reshapes lose the batch axis's symbol in shape inference (see
    :func:`batch_expand`): every product downstream of it then stays in ONNX Runtime's NCHWc layout.
    """
    if flips_kernel(conv):
        return conv_input_grad(conv, dz, x, scale)
    return conv_transpose_grad(conv, dz if scale is None else dz * channel_view(scale), x)


def conv_transpose_grad(conv: nn.Conv2d, dz: Tensor, x: Tensor, w: Tensor | None = None) -> Tensor:
    """dL/dx of a convolution as one transposed convolution with its kernel ``w`` (default ``conv.weight``) as it is.

    The kernel needs no flip or transpose: the file refers to the model's own weight.
    """
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    oh, ow = dz.shape[2], dz.shape[3]
    # A strided conv drops the last rows/columns when (H + 2p - k) % s != 0: restore them.
    pad_h = int(x.shape[2]) - ((int(oh) - 1) * sh - 2 * ph + kh)
    pad_w = int(x.shape[3]) - ((int(ow) - 1) * sw - 2 * pw + kw)
    w = conv.weight if w is None else w
    return F.conv_transpose2d(dz, w, None, (sh, sw), (ph, pw), (pad_h, pad_w))  # (N, Cin, H, W)


def _pixels(t: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, C, H*W), with the sizes written into the graph (no shape arithmetic)."""
    return t.reshape(-1, int(t.shape[1]), int(t.shape[2]) * int(t.shape[3]))


def batch_gemm(a: Tensor, b: Tensor, ones: Tensor) -> Tensor:
    """sum over images and pixels of a[n, i, p] * b[n, j, p]: (N, I, H, W), (N, J, H, W) -> (I, J).

    One GEMM per image, then the images summed by a product with ``ones`` (1, N): ONNX Runtime
    sums a (N, I, J) tensor over its first axis (or transposes images next to pixels) far slower.
    """
    i, j = int(a.shape[1]), int(b.shape[1])
    prod = torch.matmul(_pixels(a), _pixels(b).transpose(1, 2))  # (N, I, J)
    return torch.matmul(ones, prod.reshape(-1, i * j)).reshape(i, j)  # (I, J)


def im2col(conv: nn.Conv2d, x: Tensor) -> Tensor:
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


def gram_sumsq(a: Tensor, b: Tensor) -> Tensor:
    """||G||^2 in parts for G = sum over images and pixels of a[n, :, p] b[n, :, p]^T, G never formed.

    ||G||_F^2 = sum_pq (A * B)_pq with the Gram matrices A = a^T a and B = b^T b over the N*P
    pixels: (I + J) (NP)^2 multiply-adds instead of the I J NP of G itself, far fewer where
    there are few pixels and many channels (ResNet-50's last stage: 7x7 pixels, 512 x 4608 G).
    Measured in float32 against float64 on such shapes: 1e-8 relative.
    """
    return gram_parts(_rows(a), _rows(b))


def gram_parts(ra: Tensor, rb: Tensor) -> Tensor:
    """||ra^T rb||^2 in parts (one per row) from the Gram matrices of ``ra`` (R, I) and ``rb`` (R, J)."""
    return (torch.matmul(ra, ra.t()) * torch.matmul(rb, rb.t())).sum(dim=1)  # (R,)


def bn_forward(bn: nn.BatchNorm2d, z: Tensor, mode: str) -> tuple[Tensor, BNCache | None]:
    """BN of ``z`` with running or current-batch statistics, exactly as ``resnet.batch_norm``."""
    if mode == "running":
        y = F.batch_norm(z, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        return y, None  # the backward needs only constants
    mu = z.mean(dim=(0, 2, 3), keepdim=True)  # (1, C, 1, 1)
    var = ((z - mu) ** 2).mean(dim=(0, 2, 3), keepdim=True)  # population variance
    invstd = torch.rsqrt(var + bn.eps)
    x_hat = (z - mu) * invstd
    y = x_hat * channel_view(bn.weight) + channel_view(bn.bias)
    return y, BNCache(x_hat, invstd)


def bn_scale(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """(1/std, gamma/std) of a BN with running statistics, each (C,)."""
    invstd = torch.rsqrt(bn.running_var + bn.eps)
    return invstd, bn.weight * invstd


def bn_batch_backward(bn: nn.BatchNorm2d, cache: BNCache, dy: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(dL/dz, dL/dgamma, dL/dbeta) of a BN with batch statistics."""
    dbeta = dy.sum(dim=(0, 2, 3))  # (C,)
    dgamma = (dy * cache.x_hat).sum(dim=(0, 2, 3))  # (C,)
    # Batch statistics depend on z too: dz = gamma*invstd * (dy - mean(dy) - x_hat * mean(dy*x_hat)).
    # Means instead of sums / m keep the batch size out of the graph (it is a dynamic axis).
    mean_dy = dy.mean(dim=(0, 2, 3), keepdim=True)  # (1, C, 1, 1)
    mean_dy_xhat = (dy * cache.x_hat).mean(dim=(0, 2, 3), keepdim=True)
    scale = channel_view(bn.weight) * cache.invstd  # (1, C, 1, 1)
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


def maxpool_forward(pool: nn.MaxPool2d, x: Tensor) -> tuple[Tensor, Tensor]:
    """``pool(x)`` and the flat index (into the whole of x) of every window's maximum."""
    if _pair(pool.dilation) != (1, 1) or pool.ceil_mode:
        raise ValueError("only max pooling without dilation or ceil mode is supported")
    return _MaxPoolFlat.apply(x, _pair(pool.kernel_size), _pair(pool.stride), _pair(pool.padding))


def maxpool_backward(pool: nn.MaxPool2d, x: Tensor, dy: Tensor, idx: Tensor | None = None) -> Tensor:
    """Route each window's gradient to its argmax (torch's choice on ties), summing overlaps."""
    if idx is None:
        _, idx = maxpool_forward(pool, x)  # (N, C, OH, OW)
    dx = torch.zeros_like(x).reshape(-1)  # (N*C*H*W,)
    # max_unpool2d does not export; scatter-add (ScatterElements, reduction "add") does.
    return dx.scatter_add(0, idx.reshape(-1), dy.reshape(-1)).view_as(x)


def zero_pad_forward(ds: ZeroPadShortcut, x: Tensor) -> Tensor:
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


def zero_pad_backward(ds: ZeroPadShortcut, ds_out: Tensor, x: Tensor) -> Tensor:
    """dL/dx of the option A shortcut: drop the padded channels, put zeros between strided samples."""
    before = ds.extra // 2
    d = ds_out[:, before : before + int(x.shape[1])]  # (N, Cin, ceil(H/s), ceil(W/s))
    return _spread(d, ds.stride, int(x.shape[2]), int(x.shape[3]))  # (N, Cin, H, W)
