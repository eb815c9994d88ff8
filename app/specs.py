"""The model family as data: one ResNetSpec per network, no torch needed to read it."""

from __future__ import annotations

from dataclasses import dataclass

BN_MODES = ("running", "batch")
# The class activation maps of the explain graph (its input ``method`` is the index of one of them, or -1
# for none), and the maps at the input it makes from dS/d(image).
CAM_METHODS = ("gradcam", "gradcampp", "hirescam", "layercam")
INPUT_METHODS = ("saliency", "smoothgrad", "ig")
NO_CAM = -1  # the explain graph's ``method`` for a run that needs no class activation map
DEFAULT_MODELS = ("resnet20", "resnet56", "resnet110", "resnet18", "resnet50")


@dataclass(frozen=True)
class ResNetSpec:
    """What distinguishes one member of the family from another."""

    name: str
    family: str  # "imagenet" (Table 5-1) or "cifar" (6n+2 layers)
    block: str  # "basic" (two 3x3) or "bottleneck" (1x1, 3x3, 1x1)
    layers: tuple[int, ...]  # blocks per stage
    widths: tuple[int, ...]  # planes per stage (before the bottleneck's 4x expansion)
    num_classes: int
    input_size: int  # square input side in pixels
    shortcut: str  # "B": 1x1 projection where shapes differ; "A": zero padding, no parameters

    @property
    def depth(self) -> int:
        """Layer count by the chapter's rule: conv and fc layers only."""
        per_block = 2 if self.block == "basic" else 3
        return 1 + per_block * sum(self.layers) + 1

    @property
    def num_blocks(self) -> int:
        """Number of residual blocks, which is also the length of the gate vector."""
        return sum(self.layers)


def _imagenet(name: str, block: str, layers: tuple[int, ...]) -> ResNetSpec:
    return ResNetSpec(name, "imagenet", block, layers, (64, 128, 256, 512), 1000, 224, "B")


def _cifar(n: int) -> ResNetSpec:
    return ResNetSpec(f"resnet{6 * n + 2}", "cifar", "basic", (n, n, n), (16, 32, 64), 10, 32, "A")


SPECS: dict[str, ResNetSpec] = {
    s.name: s
    for s in [
        _imagenet("resnet18", "basic", (2, 2, 2, 2)),
        _imagenet("resnet34", "basic", (3, 4, 6, 3)),
        _imagenet("resnet50", "bottleneck", (3, 4, 6, 3)),
        _imagenet("resnet101", "bottleneck", (3, 4, 23, 3)),
        _imagenet("resnet152", "bottleneck", (3, 8, 36, 3)),
        *(_cifar(n) for n in (3, 5, 7, 9, 18, 200)),
    ]
}


def cam_output(layer: str, method: str) -> str:
    """The explain graph's output holding ``method``'s map at ``layer``, (N, h, w): ``cam:<layer>:<method>``."""
    return f"cam:{layer}:{method}"
