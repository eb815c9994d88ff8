"""The chapter's figures, each recomputed by describing layers and counting (no number typed in).

Everything the architecture page and ``resviz chapter`` print comes from here:
- ``tables``: Table 5-1 for the ImageNet and CIFAR families and Fig. 5-8 (VGG-19 / plain-34 /
  ResNet-34 side by side), from the layer algebra of ``app.arch``;
- ``examples``: the block arithmetic of Example 5-3, the 3x3 versus 5x5/7x7 ratios, the n-4
  output-size demonstration and the 1x1 convolution examples (run with numpy), the layer
  counting of 5.3.2, the 5 -> 5.1 worked example.
"""

from __future__ import annotations

import json
from functools import lru_cache

from app import arch
from app.arch import VGG19_CONFIG
from app.chapter.examples import (
    block_params_at_256,
    global_average_pooling_demo,
    layer_count,
    one_by_one_conv,
    output_size_demo,
    residual_gradient,
    shortcut_channel_example,
    stacked_3x3_ratio,
    worked_example_5_to_5_1,
)
from app.chapter.tables import (
    PAPER_CIFAR_PARAMS_M,
    PAPER_GMACS,
    TORCHVISION_PARAMS,
    _family_table,
    cifar_table,
    paper_layout_macs,
    table_5_1,
    vgg19_vs_resnet34,
)
from app.specs import SPECS

__all__ = [
    "PAPER_CIFAR_PARAMS_M",
    "PAPER_GMACS",
    "TORCHVISION_PARAMS",
    "VGG19_CONFIG",
    "chapter_figures",
    "output_size_demo",
    "paper_layout_macs",
    "summary_lines",
]


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


def summary_lines(f: dict) -> list[str]:
    """The chapter's main numbers as lines of text (what ``resviz chapter`` prints)."""
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
