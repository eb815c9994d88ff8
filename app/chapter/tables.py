"""Table 5-1, the CIFAR family and Fig. 5-8, regenerated from ``app.arch`` (no number typed in).

Only the *paper's* reference values (which the product compares against) are written down, and
each is labelled as such.
"""

from __future__ import annotations

from app import arch
from app.arch import conv_macs, vgg19_layers
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


def _row(layer: arch.Layer, note: str = "") -> dict:
    """One row of a layer list as the architecture page draws it."""
    kind = "shortcut" if ".downsample." in layer.id else layer.kind
    return {
        "name": layer.id,
        "kind": kind,
        "out_size": layer.out_size,
        "channels": layer.out_channels,
        "params": layer.params,
        "macs": layer.macs,
        "note": note,
    }


def _note(layer: arch.Layer, spec: ResNetSpec | None) -> str:
    """What a row says beside its numbers: pooling windows, kernel and stride, the shortcut option."""
    if layer.kind == "pool":
        if layer.id == "avgpool":
            return "global average pool"
        return f"{layer.kernel}x{layer.kernel} max pool, stride {layer.stride}"
    if spec is None:
        return ""
    note = f"{layer.kernel}x{layer.kernel}" + (f", stride {layer.stride}" if layer.stride > 1 else "")
    return note + (" projection shortcut (option B)" if ".downsample." in layer.id else "")


def _resnet_rows(spec: ResNetSpec, shortcuts: bool = True) -> list[dict]:
    """A ResNet's weight layers and pools; shortcuts=False gives its plain twin."""
    return [
        _row(la, _note(la, spec))
        for la in arch.layers(spec, pools=True)
        if la.kind != "bn" and (shortcuts or ".downsample." not in la.id)
    ]


def _bn_params(spec: ResNetSpec, shortcuts: bool = True) -> int:
    return sum(
        layer.params
        for layer in arch.layers(spec)
        if layer.kind == "bn" and (shortcuts or ".downsample." not in layer.id)
    )


def _net_summary(name: str, rows: list[dict], bn_params: int, depth_rule: str) -> dict:
    weight = [r for r in rows if r["kind"] in ("conv", "fc")]
    return {
        "name": name,
        "layers": rows,
        "weight_layers": len(weight),
        "depth_rule": depth_rule,
        "shortcut_convs": sum(r["kind"] == "shortcut" for r in rows),
        "params": sum(r["params"] for r in rows) + bn_params,
        "bn_params": bn_params,
        "macs": sum(r["macs"] for r in rows),
    }


def vgg19_vs_resnet34() -> dict:
    """Fig. 5-8: VGG-19, the 34-layer plain network and ResNet-34, layer by layer with totals."""
    spec = SPECS["resnet34"]
    vgg = _net_summary("VGG-19", [_row(la, _note(la, None)) for la in vgg19_layers()], 0, "16 conv + 3 fc")
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
