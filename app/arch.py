"""Layer-by-layer arithmetic of a ResNetSpec without torch: shapes, parameters, multiply-adds.

The server lists models, and the chapter views print Table 5-1, from these counts; the tests
check them against the torch modules of ``app.nets.resnet`` layer by layer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from app.specs import SPECS, ResNetSpec


@dataclass(frozen=True)
class Layer:
    """One parameterised layer (conv, bn or fc) with its shapes and cost."""

    id: str  # torch module path, e.g. "layer2.0.conv1"
    kind: str  # "conv", "bn" or "fc"
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    out_size: int  # output side in pixels (1 for fc)
    params: int
    macs: int  # multiply-adds for one input image

    def as_dict(self) -> dict:
        """The layer as a plain dict."""
        return asdict(self)


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class _Builder:
    def __init__(self) -> None:
        self.layers: list[Layer] = []

    def conv(self, id: str, cin: int, cout: int, k: int, stride: int, size: int) -> int:
        out = _conv_out(size, k, stride, k // 2)
        self.layers.append(
            Layer(id, "conv", cin, cout, k, stride, out, cin * cout * k * k, cin * k * k * cout * out * out)
        )
        return out

    def bn(self, id: str, c: int, size: int) -> None:
        self.layers.append(Layer(id, "bn", c, c, 1, 1, size, 2 * c, 0))


def layers(spec: ResNetSpec) -> list[Layer]:
    """Every conv, bn and fc layer of ``spec`` in forward order."""
    b = _Builder()
    size = spec.input_size
    c = spec.widths[0]
    if spec.family == "imagenet":
        size = b.conv("conv1", 3, c, 7, 2, size)
        b.bn("bn1", c, size)
        size = _conv_out(size, 3, 2, 1)  # 3x3 max pool, stride 2
    else:
        size = b.conv("conv1", 3, c, 3, 1, size)
        b.bn("bn1", c, size)
    expansion = 1 if spec.block == "basic" else 4
    for s, (planes, n) in enumerate(zip(spec.widths, spec.layers, strict=True)):
        for i in range(n):
            p = f"layer{s + 1}.{i}"
            stride = 2 if (s > 0 and i == 0) else 1
            out_c = planes * expansion
            if spec.block == "basic":
                mid = b.conv(f"{p}.conv1", c, planes, 3, stride, size)
                b.bn(f"{p}.bn1", planes, mid)
                b.conv(f"{p}.conv2", planes, planes, 3, 1, mid)
                b.bn(f"{p}.bn2", planes, mid)
            else:
                b.conv(f"{p}.conv1", c, planes, 1, 1, size)
                b.bn(f"{p}.bn1", planes, size)
                mid = b.conv(f"{p}.conv2", planes, planes, 3, stride, size)
                b.bn(f"{p}.bn2", planes, mid)
                b.conv(f"{p}.conv3", planes, out_c, 1, 1, mid)
                b.bn(f"{p}.bn3", out_c, mid)
            if (stride != 1 or c != out_c) and spec.shortcut == "B":
                b.conv(f"{p}.downsample.0", c, out_c, 1, stride, size)
                b.bn(f"{p}.downsample.1", out_c, mid)
            size, c = mid, out_c
    b.layers.append(
        Layer("fc", "fc", c, spec.num_classes, 1, 1, 1, c * spec.num_classes + spec.num_classes, c * spec.num_classes)
    )
    return b.layers


def summary(spec: ResNetSpec) -> dict:
    """Name, family, depth, blocks, params and MACs of a model, computed from its layers."""
    ls = layers(spec)
    return {
        "name": spec.name,
        "family": spec.family,
        "depth": spec.depth,
        "block": spec.block,
        "blocks": spec.num_blocks,
        "stages": list(spec.layers),
        "input_size": spec.input_size,
        "num_classes": spec.num_classes,
        "shortcut": spec.shortcut,
        "params": sum(layer.params for layer in ls),
        "macs": sum(layer.macs for layer in ls),
    }


def all_summaries() -> list[dict]:
    """Summaries of every model in the family, ImageNet first."""
    return [summary(s) for s in SPECS.values()]
