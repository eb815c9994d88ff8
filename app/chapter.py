"""The chapter's figures, each recomputed by describing layers and counting (no number typed in).

Everything the architecture page and ``resviz chapter`` print comes from here: Table 5-1 for the
ImageNet and CIFAR families (from ``app.arch``), the block arithmetic of Example 5-3, the 3x3 versus
5x5/7x7 ratios, the n-4 output-size demonstration and the 1x1 convolution examples (run with numpy),
the layer counting of 5.3.2, the 5 -> 5.1 worked example, and VGG-19 / plain-34 / ResNet-34 side by
side (Fig. 5-8) from a small torch-free layer algebra. Only the *paper's* reference values (which the
product compares against) are written down, and each is labelled as such.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from app import arch
from app.specs import SPECS, ResNetSpec

IMAGENET_MODELS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
CIFAR_MODELS = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202")

# The paper's (and the chapter's) published values: references to compare against, never displayed as ours.
PAPER_GMACS = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8, "resnet101": 7.6, "resnet152": 11.3}
PAPER_CIFAR_PARAMS_M = {
    "resnet20": 0.27,
    "resnet32": 0.46,
    "resnet44": 0.66,
    "resnet56": 0.85,
    "resnet110": 1.7,
    "resnet1202": 19.4,
}
TORCHVISION_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}
PAPER_VGG19_GMACS = 19.6
PAPER_PLAIN34_GMACS = 3.6
CHAPTER_PRINTED_SHORTCUT_CHANNELS = 63  # the chapter's misprint for the 64 -> 128 shortcut example

VGG19_CONFIG: tuple[int | str, ...] = (
    *(64, 64, "M"),
    *(128, 128, "M"),
    *(256, 256, 256, 256, "M"),
    *(512, 512, 512, 512, "M"),
    *(512, 512, 512, 512, "M"),
)
VGG19_FC = (4096, 4096, 1000)


# ---------------------------------------------------------------- a tiny layer algebra


@dataclass(frozen=True)
class Row:
    """One row of a layer list: a conv, pool or fc layer with its output shape and cost."""

    name: str
    kind: str  # "conv", "shortcut", "pool" or "fc"
    out_size: int
    channels: int
    params: int
    macs: int
    note: str = ""

    def as_dict(self) -> dict:
        """The row as a plain dict."""
        return asdict(self)


def conv_out_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output side of a convolution or pooling window."""
    return (size + 2 * padding - kernel) // stride + 1


def conv_params(cin: int, cout: int, kernel: int, bias: bool = False) -> int:
    """Learnable parameters of a kernel x kernel convolution from cin to cout channels."""
    return cin * cout * kernel * kernel + (cout if bias else 0)


def conv_macs(cin: int, cout: int, kernel: int, out_size: int) -> int:
    """Multiply-adds of a convolution for one image: one kernel-sized dot product per output value."""
    return cin * kernel * kernel * cout * out_size * out_size


def vgg19_layers(input_size: int = 224, num_classes: int = 1000) -> list[Row]:
    """VGG-19 layer by layer: 16 3x3 convs (padding 1, bias) in 5 groups, 5 max pools, 3 fc layers."""
    rows: list[Row] = []
    size, c, group, idx = input_size, 3, 1, 1
    for item in VGG19_CONFIG:
        if item == "M":
            size = conv_out_size(size, 2, 2)
            rows.append(Row(f"pool{group}", "pool", size, c, 0, 0, "2x2 max pool, stride 2"))
            group, idx = group + 1, 1
            continue
        cout = int(item)
        size = conv_out_size(size, 3, 1, 1)
        rows.append(
            Row(f"conv{group}_{idx}", "conv", size, cout, conv_params(c, cout, 3, True), conv_macs(c, cout, 3, size))
        )
        c, idx = cout, idx + 1
    features = c * size * size
    fcs = (*VGG19_FC[:-1], num_classes)
    for i, out in enumerate(fcs):
        rows.append(Row(f"fc{6 + i}", "fc", 1, out, features * out + out, features * out))
        features = out
    return rows


def _resnet_rows(spec: ResNetSpec, shortcuts: bool = True) -> list[Row]:
    """A ResNet's weight layers (and pools) from ``app.arch``; shortcuts=False gives its plain twin."""
    rows: list[Row] = []
    for layer in arch.layers(spec):
        if layer.kind == "bn":
            if layer.id == "bn1" and spec.family == "imagenet":
                size = conv_out_size(layer.out_size, 3, 2, 1)
                rows.append(Row("maxpool", "pool", size, layer.out_channels, 0, 0, "3x3 max pool, stride 2"))
            continue
        is_shortcut = ".downsample." in layer.id
        if is_shortcut and not shortcuts:
            continue
        if layer.kind == "fc":
            rows.append(Row("avgpool", "pool", 1, layer.in_channels, 0, 0, "global average pool"))
        note = f"{layer.kernel}x{layer.kernel}" + (f", stride {layer.stride}" if layer.stride > 1 else "")
        if is_shortcut:
            note += " projection shortcut (option B)"
        kind = "shortcut" if is_shortcut else layer.kind
        rows.append(Row(layer.id, kind, layer.out_size, layer.out_channels, layer.params, layer.macs, note))
    return rows


def _bn_params(spec: ResNetSpec, shortcuts: bool = True) -> int:
    return sum(
        layer.params
        for layer in arch.layers(spec)
        if layer.kind == "bn" and (shortcuts or ".downsample." not in layer.id)
    )


def _net_summary(name: str, rows: list[Row], bn_params: int, depth_rule: str) -> dict:
    weight = [r for r in rows if r.kind in ("conv", "fc")]
    return {
        "name": name,
        "layers": [r.as_dict() for r in rows],
        "weight_layers": len(weight),
        "depth_rule": depth_rule,
        "shortcut_convs": sum(r.kind == "shortcut" for r in rows),
        "params": sum(r.params for r in rows) + bn_params,
        "bn_params": bn_params,
        "macs": sum(r.macs for r in rows),
    }


def vgg19_vs_resnet34() -> dict:
    """Fig. 5-8: VGG-19, the 34-layer plain network and ResNet-34, layer by layer with totals."""
    spec = SPECS["resnet34"]
    vgg = _net_summary("VGG-19", vgg19_layers(), 0, "16 conv + 3 fc")
    plain = _net_summary("plain-34", _resnet_rows(spec, shortcuts=False), _bn_params(spec, False), "33 conv + 1 fc")
    res = _net_summary("ResNet-34", _resnet_rows(spec, shortcuts=True), _bn_params(spec, True), "33 conv + 1 fc")
    vgg_fc = sum(r["params"] for r in vgg["layers"] if r["kind"] == "fc")
    res_fc = sum(r["params"] for r in res["layers"] if r["kind"] == "fc")
    return {
        "networks": [vgg, plain, res],
        "paper_gmacs": {
            "VGG-19": PAPER_VGG19_GMACS,
            "plain-34": PAPER_PLAIN34_GMACS,
            "ResNet-34": PAPER_GMACS["resnet34"],
        },
        "ratio_vgg_to_resnet34_macs": vgg["macs"] / res["macs"],
        "shortcut_macs": res["macs"] - plain["macs"],
        "shortcut_params": res["params"] - plain["params"],
        "head": {
            "vgg19_fc_params": vgg_fc,
            "resnet34_fc_params": res_fc,
            "ratio": vgg_fc / res_fc,
            "text": (
                f"VGG-19's three fully connected layers hold {vgg_fc:,} parameters "
                f"({vgg_fc / vgg['params']:.0%} of the network); ResNet-34 averages each of its 512 final maps "
                f"to one number and needs one {res_fc:,}-parameter fc layer."
            ),
        },
        "notes": [
            f"Plain-34 has ResNet-34's conv layers without the {res['shortcut_convs']} projection shortcuts: "
            f"{res['macs'] - plain['macs']:,} fewer multiply-adds, "
            f"{res['params'] - plain['params']:,} fewer parameters. "
            "Identity shortcuts cost nothing.",
            f"VGG-19 needs {vgg['macs'] / res['macs']:.1f}x the multiply-adds of ResNet-34.",
        ],
    }


# ---------------------------------------------------------------- Table 5-1

STAGE_NAMES = ("conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x")


def _stage_of(layer_id: str) -> str:
    if layer_id.startswith("layer"):
        return STAGE_NAMES[int(layer_id[5 : layer_id.index(".")])]
    return "head" if layer_id == "fc" else "conv1"


def block_text(spec: ResNetSpec, stage: int) -> str:
    """The configuration text of one stage, e.g. "[1x1, 64; 3x3, 64; 1x1, 256] x 3", read from its first block."""
    prefix = f"layer{stage + 1}.0.conv"
    convs = [la for la in arch.layers(spec) if la.kind == "conv" and la.id.startswith(prefix)]
    inner = "; ".join(f"{c.kernel}x{c.kernel}, {c.out_channels}" for c in convs)
    return f"[{inner}] x {spec.layers[stage]}"


def _family_table(names: tuple[str, ...]) -> dict:
    specs = [SPECS[n] for n in names]
    stage_rows: dict[str, dict] = {}
    totals: dict[str, dict] = {}
    for spec in specs:
        ls = arch.layers(spec)
        conv1 = ls[0]
        for la in ls:
            st = _stage_of(la.id)
            row = stage_rows.setdefault(st, {"stage": st, "output_sizes": set(), "cells": {}})
            cell = row["cells"].setdefault(spec.name, {"text": "", "params": 0, "macs": 0, "layers": 0})
            cell["params"] += la.params
            cell["macs"] += la.macs
            cell["layers"] += la.kind in ("conv", "fc") and ".downsample." not in la.id
            if la.kind == "conv" or la.kind == "fc":
                row["output_sizes"].add(la.out_size)
        stride = f", stride {conv1.stride}" if conv1.stride > 1 else ""
        stage_rows["conv1"]["cells"][spec.name]["text"] = f"{conv1.kernel}x{conv1.kernel}, {conv1.out_channels}{stride}"
        for s in range(len(spec.layers)):
            text = block_text(spec, s)
            if s == 0 and spec.family == "imagenet":
                text = "3x3 max pool, stride 2; " + text
            stage_rows[STAGE_NAMES[s + 1]]["cells"][spec.name]["text"] = text
        stage_rows["head"]["cells"][spec.name]["text"] = f"global average pool, {spec.num_classes}-d fc, softmax"
        s = arch.summary(spec)
        totals[spec.name] = {
            "depth": spec.depth,
            "params": s["params"],
            "macs": s["macs"],
            "gmacs": s["macs"] / 1e9,
        }
        if spec.name in PAPER_GMACS:
            totals[spec.name]["paper_gmacs"] = PAPER_GMACS[spec.name]
            totals[spec.name]["paper_layout_gmacs"] = paper_layout_macs(spec) / 1e9
            totals[spec.name]["torchvision_params"] = TORCHVISION_PARAMS[spec.name]
        if spec.name in PAPER_CIFAR_PARAMS_M:
            totals[spec.name]["paper_params_m"] = PAPER_CIFAR_PARAMS_M[spec.name]
    rows = []
    for st in (*STAGE_NAMES[: len(specs[0].layers) + 1], "head"):
        row = stage_rows[st]
        sizes = sorted(row.pop("output_sizes"), reverse=True)
        row["output_size"] = sizes[-1]
        row["output"] = f"{sizes[-1]}x{sizes[-1]}"
        rows.append(row)
    return {
        "input_size": specs[0].input_size,
        "models": list(names),
        "stages": rows,
        "totals": totals,
    }


def paper_layout_macs(spec: ResNetSpec) -> int:
    """Multiply-adds with the original (Caffe) bottleneck, whose stride sits on the first 1x1 instead of the 3x3."""
    total = 0
    ls = {la.id: la for la in arch.layers(spec)}
    for la in ls.values():
        macs = la.macs
        if spec.block == "bottleneck" and la.id.endswith(".0.conv1"):
            strided = ls[la.id[: -len("conv1")] + "conv2"]
            if strided.stride > 1:  # the 1x1 already works at the halved size
                macs = conv_macs(la.in_channels, la.out_channels, la.kernel, strided.out_size)
        total += macs
    return total


def table_5_1() -> dict:
    """Table 5-1 regenerated from ``app.arch``: per stage output, block configuration, params and MACs."""
    imagenet = _family_table(IMAGENET_MODELS)
    cifar = _family_table(CIFAR_MODELS)
    r50 = imagenet["totals"]["resnet50"]
    tot = imagenet["totals"]
    r50 = tot["resnet50"]
    deeper = " / ".join(f"{tot[n]['paper_layout_gmacs']:.2f}e9" for n in ("resnet101", "resnet152"))
    paper = " / ".join(f"{tot[n]['paper_gmacs']}e9" for n in ("resnet101", "resnet152"))
    notes = [
        f"ResNet-50 in the torchvision layout (stride 2 on the 3x3 of the bottleneck) needs {r50['gmacs']:.2f}e9 "
        f"multiply-adds against the paper's {r50['paper_gmacs']}e9; putting the stride on the first 1x1, as the "
        f"original model did, gives {r50['paper_layout_gmacs']:.2f}e9 (and {deeper} for ResNet-101/152, "
        f"against the paper's {paper}).",
        "FLOPs in the table are multiply-adds of the conv and fc layers for one 224x224 image; "
        "batch norm, ReLU, pooling and the shortcut additions are not counted.",
        "The CIFAR networks use identity shortcuts with zero padding (option A): no shortcut parameters.",
    ]
    return {"imagenet": imagenet, "cifar": cifar, "notes": notes}


def cifar_table() -> list[dict]:
    """The CIFAR-10 family (6n+2 layers): computed parameter counts against the paper's."""
    out = []
    for name in CIFAR_MODELS:
        spec = SPECS[name]
        s = arch.summary(spec)
        paper = PAPER_CIFAR_PARAMS_M[name]
        out.append(
            {
                "name": name,
                "n": spec.layers[0],
                "depth": spec.depth,
                "formula": f"6 x {spec.layers[0]} + 2 = {spec.depth}",
                "params": s["params"],
                "params_m": s["params"] / 1e6,
                "paper_params_m": paper,
                "relative_difference": s["params"] / (paper * 1e6) - 1,
                "macs": s["macs"],
            }
        )
    return out


# ---------------------------------------------------------------- arithmetic of 5.2 and 5.3


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


@lru_cache(maxsize=8)
def _figures(n: int) -> str:
    blocks = block_params_at_256()
    r50 = _family_table(("resnet50",))["totals"]["resnet50"]
    r34 = arch.summary(SPECS["resnet34"])
    figs = {
        **{k: v for k, v in blocks.items() if not k.endswith("_layers")},
        "block_params": blocks,
        "ratio_two_3x3_vs_5x5": stacked_3x3_ratio(2)["ratio"],
        "ratio_three_3x3_vs_7x7": stacked_3x3_ratio(3)["ratio"],
        "stacked_3x3": [stacked_3x3_ratio(2), stacked_3x3_ratio(3)],
        "output_size_demo": output_size_demo(n),
        "one_by_one_conv": one_by_one_conv(),
        "layer_count": layer_count(),
        "worked_example_5_to_5_1": worked_example_5_to_5_1(),
        "shortcut_channel_example": shortcut_channel_example(),
        "residual_gradient": residual_gradient(),
        "global_average_pooling": global_average_pooling_demo(),
        "resnet50_gmacs": r50["gmacs"],
        "resnet50_paper_layout_gmacs": r50["paper_layout_gmacs"],
        "resnet34_gmacs": r34["macs"] / 1e9,
        "table_5_1": table_5_1(),
        "cifar_table": cifar_table(),
        "vgg19_vs_resnet34": vgg19_vs_resnet34(),
    }
    return json.dumps(figs)


def chapter_figures(n: int = 7) -> dict:
    """Every figure of the chapter, computed; ``n`` is the input side of the n-4 demonstration."""
    output_size_demo(n)  # validate before caching
    return json.loads(_figures(n))


# ---------------------------------------------------------------- command line


def _summary_lines(f: dict) -> list[str]:
    t = f["table_5_1"]["imagenet"]
    lines = [
        "Example 5-3 (256 channels):",
        f"  basic block      {f['basic_formula']}",
        f"  bottleneck block {f['bottleneck_formula']}",
        f"  bottleneck: {f['bottleneck_reduction_text']}",
        f"two 3x3 vs one 5x5: {f['ratio_two_3x3_vs_5x5']:.2f}; three 3x3 vs one 7x7: {f['ratio_three_3x3_vs_7x7']:.3f}",
        f"output size: {f['output_size_demo']['text']}",
        f"1x1 conv: {f['one_by_one_conv']['channels']['text']}",
        f"worked example: {f['worked_example_5_to_5_1']['text']}",
        f"shortcut 64 -> 128: {f['shortcut_channel_example']['option_b']['params']:,} params (option B). "
        + f["shortcut_channel_example"]["correction"],
        "",
        "Table 5-1 (ImageNet, 224x224):",
        f"  {'model':<10} {'layers':<28} {'params':>12} {'GMACs':>7} {'paper':>6} {'stride-on-1x1':>13}",
    ]
    for name in t["models"]:
        tot = t["totals"][name]
        lc = f["layer_count"][str(tot["depth"])]["formula"].split(" = ")[-2:]
        lines.append(
            f"  {name:<10} {' = '.join(lc):<28} {tot['params']:>12,} {tot['gmacs']:>7.2f} "
            f"{tot['paper_gmacs']:>6} {tot['paper_layout_gmacs']:>13.2f}"
        )
    lines += ["", "CIFAR-10 (6n+2):"]
    for r in f["cifar_table"]:
        lines.append(
            f"  {r['name']:<10} {r['formula']:<18} {r['params']:>11,} params (paper {r['paper_params_m']}M, "
            f"{r['relative_difference']:+.1%})"
        )
    lines += ["", "Fig. 5-8:"]
    for net in f["vgg19_vs_resnet34"]["networks"]:
        lines.append(f"  {net['name']:<10} {net['macs'] / 1e9:6.2f} GMACs {net['params']:>13,} params")
    lines += ["", *f["table_5_1"]["notes"]]
    return lines


def cmd_chapter(args: argparse.Namespace) -> int:
    """Print the chapter's figures (JSON with --json, else a short summary)."""
    figs = chapter_figures(args.n)
    if args.json:
        print(json.dumps(figs, indent=2))
    else:
        print("\n".join(_summary_lines(figs)))
    return 0


def add_cli(sub: argparse._SubParsersAction) -> None:
    """Add the ``chapter`` subcommand to the ``resviz`` parser."""
    s = sub.add_parser("chapter", help="print the chapter's figures, computed from the layer descriptions")
    s.add_argument("--json", action="store_true", help="every figure as JSON")
    s.add_argument("--n", type=int, default=7, help="input side for the n-4 output-size demo (default: %(default)s)")
    s.set_defaults(func=cmd_chapter)
