"""The arithmetic of sections 5.2 and 5.3, each example recomputed (the small ones run with numpy).

Example 5-3's block parameters, 3x3 against 5x5/7x7, the n-4 output size, the 1x1 convolution,
the layer count of 5.3.2, the 5 -> 5.1 worked example, the 64 -> 128 shortcut, H'(x) = F'(x) + 1
and global average pooling.
"""

from __future__ import annotations

import numpy as np

from app import arch
from app.arch import conv_params
from app.chapter.tables import CIFAR_MODELS, IMAGENET_MODELS
from app.specs import SPECS

CHAPTER_PRINTED_SHORTCUT_CHANNELS = 63  # the chapter's misprint for the 64 -> 128 shortcut example


def _block_convs(spec_name: str, block: str) -> list[arch.Layer]:
    return [la for la in arch.layers(SPECS[spec_name]) if la.kind == "conv" and la.id.startswith(block + ".conv")]


def block_params_at_256() -> dict:
    """Example 5-3: a basic block against a bottleneck block, both 256 channels in and out."""
    # ResNet-34's layer3.1 is a 256-channel basic block; ResNet-50's layer1.1 a 256-channel bottleneck (64 inside).
    basic = _block_convs("resnet34", "layer3.1")
    bottleneck = _block_convs("resnet50", "layer1.1")
    bp = sum(c.params for c in basic)
    kp = sum(c.params for c in bottleneck)

    def formula(convs: list[arch.Layer]) -> str:
        return " + ".join(f"{c.kernel}*{c.kernel}*{c.in_channels}*{c.out_channels}" for c in convs)

    reduction = 1 - kp / bp
    return {
        "basic_block_params": bp,
        "basic_formula": formula(basic) + f" = {bp:,}",
        "basic_layers": [c.as_dict() for c in basic],
        "bottleneck_block_params": kp,
        "bottleneck_formula": formula(bottleneck) + f" = {kp:,}",
        "bottleneck_layers": [c.as_dict() for c in bottleneck],
        "bottleneck_reduction": reduction,
        "bottleneck_reduction_text": f"{reduction:.1%} fewer",
    }


def stacked_3x3_ratio(count: int, channels: int = 64) -> dict:
    """Parameters of ``count`` stacked 3x3 convs against one conv with the same receptive field."""
    big = 2 * count + 1  # each 3x3 widens the receptive field by 2
    stacked = count * conv_params(channels, channels, 3)
    single = conv_params(channels, channels, big)
    return {
        "stack": f"{count} x 3x3",
        "single": f"{big}x{big}",
        "channels": channels,
        "stacked_params": stacked,
        "single_params": single,
        "ratio": stacked / single,
        "text": f"{count}*9/{big * big} = {stacked / single:.3g}",
    }


def _valid_conv(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Stride-1, no-padding 2-D correlation of one channel."""
    windows = np.lib.stride_tricks.sliding_window_view(x, kernel.shape)
    return np.einsum("ijkl,kl->ij", windows, kernel)


def _backward(grad_out: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Input gradient of ``_valid_conv``: a full convolution of the output gradient with the kernel."""
    kh, kw = kernel.shape
    return _valid_conv(np.pad(grad_out, ((kh - 1, kh - 1), (kw - 1, kw - 1))), kernel[::-1, ::-1])


def output_size_demo(n: int = 7) -> dict:
    """n x n input, stride 1, no padding: one 5x5 conv and two 3x3 convs both give n-4, seeing a 5x5 patch."""
    if not 5 <= n <= 64:
        raise ValueError(f"n must be between 5 and 64, got {n}")
    x = np.arange(n * n, dtype=np.float64).reshape(n, n)
    k3, k5 = np.ones((3, 3)) / 9, np.ones((5, 5)) / 25
    one5 = _valid_conv(x, k5)
    a = _valid_conv(x, k3)
    two3 = _valid_conv(a, k3)
    # Receptive field: send a gradient of 1 back from the top-left output and see which inputs it reaches.
    g5 = _backward(np.pad(np.ones((1, 1)), ((0, one5.shape[0] - 1), (0, one5.shape[1] - 1))), k5)
    g3 = _backward(_backward(np.pad(np.ones((1, 1)), ((0, two3.shape[0] - 1), (0, two3.shape[1] - 1))), k3), k3)
    seen5, seen3 = g5 != 0, g3 != 0
    return {
        "n": n,
        "input_shape": list(x.shape),
        "one_5x5": list(one5.shape),
        "two_3x3_after_first": list(a.shape),
        "two_3x3": list(two3.shape),
        "n_minus_4": n - 4,
        "receptive_field_5x5": int(seen5.sum(axis=1).max()),
        "receptive_field_two_3x3": int(seen3.sum(axis=1).max()),
        "text": f"{n}x{n} input: one 5x5 conv gives {one5.shape[0]}x{one5.shape[1]}; "
        f"two 3x3 convs give {a.shape[0]}x{a.shape[1]}, then {two3.shape[0]}x{two3.shape[1]}",
    }


def one_by_one_conv() -> dict:
    """Fig. 5-6 and the channel example: a 1x1 conv scales one channel, and maps 64 channels to 28."""
    x = (np.arange(36).reshape(6, 6, 1) % 9 + 1).astype(np.float64)  # (H, W, C=1)
    w = np.full((1, 1), 3.0)  # (C_in, C_out): one 1x1 filter of value 3
    y = np.einsum("hwc,cd->hwd", x, w)
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((6, 6, 64))  # the output of a 3x3 conv with 64 filters
    w28 = rng.standard_normal((64, 28))  # 28 filters of size 1x1x64
    out28 = np.einsum("hwc,cd->hwd", feats, w28)
    # Cross-channel mixing: one output value is the dot product of that pixel's 64 channels with a filter.
    mixes = bool(np.allclose(out28[2, 3], feats[2, 3] @ w28))
    return {
        "scale": {
            "input": x[..., 0].tolist(),
            "kernel": float(w[0, 0]),
            "output": y[..., 0].tolist(),
            "input_shape": list(x.shape),
            "output_shape": list(y.shape),
            "tripled": bool(np.array_equal(y, 3 * x)),
        },
        "channels": {
            "input_shape": list(feats.shape),
            "kernel_shape": [1, 1, 64, 28],
            "output_shape": list(out28.shape),
            "params": conv_params(64, 28, 1),
            "params_with_bias": conv_params(64, 28, 1, bias=True),
            "per_pixel_dot_product": mixes,
            "text": f"3x3x64 -> 1x1x28: {feats.shape[-1]} channels in, {out28.shape[-1]} out, "
            f"{conv_params(64, 28, 1):,} weights (+28 biases)",
        },
    }


def layer_count() -> dict:
    """Section 5.3.2: 1 conv + blocks x convs-per-block + 1 fc, checked against the arch layer list."""
    out = {}
    for name in (*IMAGENET_MODELS, *CIFAR_MODELS):
        spec = SPECS[name]
        per = len(_block_convs(name, "layer1.0"))
        blocks = spec.num_blocks
        total = 1 + blocks * per + 1
        listed = sum(1 for la in arch.layers(spec) if la.kind in ("conv", "fc") and ".downsample." not in la.id)
        stages = "+".join(str(n) for n in spec.layers)
        out[str(spec.depth)] = {
            "name": name,
            "family": spec.family,
            "stages": list(spec.layers),
            "blocks": blocks,
            "convs_per_block": per,
            "total": total,
            "formula": f"1 + ({stages}) x {per} + 1 = 1 + {blocks} x {per} + 1 = {total}",
            "arch_weight_layers": listed,
            "matches": total == listed == spec.depth,
        }
    return out


def worked_example_5_to_5_1(x: float = 5.0, target: float = 5.1, new_target: float = 5.2) -> dict:
    """Section 5.2.1: a plain mapping moves by about 2% where the residual mapping moves by 100%."""
    plain, plain_new = target, new_target  # F'(x) = H(x)
    res, res_new = target - x, new_target - x  # F(x) = H(x) - x
    plain_change = (plain_new - plain) / plain
    res_change = (res_new - res) / res
    return {
        "x": x,
        "target": target,
        "new_target": new_target,
        "plain": {"before": plain, "after": plain_new, "relative_change": plain_change},
        "residual": {"before": round(res, 12), "after": round(res_new, 12), "relative_change": res_change},
        "text": (
            f"plain F'({x:g}) = {plain:g} -> {plain_new:g}: a change of {plain_change:.1%} "
            f"(1/{round(1 / plain_change)}); "
            f"residual F({x:g}) = {res:.1f} -> {res_new:.1f}: a change of {res_change:.0%}"
        ),
    }


def shortcut_channel_example() -> dict:
    """Section 5.2.1: the dashed shortcut from 64 to 128 channels, option A and option B."""
    la = next(la for la in arch.layers(SPECS["resnet34"]) if la.id == "layer2.0.downsample.0")
    return {
        "layer": la.id,
        "in_channels": la.in_channels,
        "out_channels": la.out_channels,
        "stride": la.stride,
        "option_a": {"params": 0, "zero_channels": la.out_channels - la.in_channels},
        "option_b": {"params": la.params, "macs": la.macs, "formula": f"1*1*{la.in_channels}*{la.out_channels}"},
        "correction": (
            f"The chapter prints {CHAPTER_PRINTED_SHORTCUT_CHANNELS} for the input channels; "
            f"the network has {la.in_channels} (conv2_x ends with {la.in_channels} channels)."
        ),
    }


def residual_gradient(fprime: tuple[float, ...] = (-0.5, 0.0, 0.001, 0.5)) -> dict:
    """Section 5.2.3: H'(x) = F'(x) + 1, so the shortcut passes at least the identity's gradient."""
    return {"rows": [{"F_prime": f, "H_prime": f + 1.0} for f in fprime]}


def global_average_pooling_demo(classes: int = 10, size: int = 7) -> dict:
    """Fig. 5-9: one map per class, each averaged to one number, then softmax."""
    rng = np.random.default_rng(1)
    maps = rng.standard_normal((classes, size, size)) + np.linspace(-1, 1, classes)[:, None, None]
    avg = maps.mean(axis=(1, 2))
    p = np.exp(avg - avg.max())
    p /= p.sum()
    return {
        "maps_shape": list(maps.shape),
        "averages": avg.tolist(),
        "softmax": p.tolist(),
        "params": 0,
        "text": f"{classes} maps of {size}x{size} -> {classes} averages -> softmax (sums to {p.sum():.3f})",
    }
