"""The one layer algebra, without torch: shapes, parameters and multiply-adds of every layer.

ResNets (from a ``ResNetSpec``, optionally with their pooling layers) and VGG-19 are described
here layer by layer. The server lists models from these counts, the chapter pages print Table 5-1
and Fig. 5-8 from them, and the tests check them against torch modules layer by layer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from app.specs import SPECS, ResNetSpec

VGG19_CONFIG: tuple[int | str, ...] = (
    *(64, 64, "M"),
    *(128, 128, "M"),
    *(256, 256, 256, 256, "M"),
    *(512, 512, 512, 512, "M"),
    *(512, 512, 512, 512, "M"),
)
VGG19_FC = (4096, 4096, 1000)


@dataclass(frozen=True)
class Layer:
    """One layer (conv, bn, pool or fc) with its shapes and cost."""

    id: str  # torch module path, e.g. "layer2.0.conv1"
    kind: str  # "conv", "bn", "pool" or "fc"
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


def conv_out_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output side of a convolution or pooling window."""
    return (size + 2 * padding - kernel) // stride + 1


def conv_params(cin: int, cout: int, kernel: int, bias: bool = False) -> int:
    """Learnable parameters of a kernel x kernel convolution from cin to cout channels."""
    return cin * cout * kernel * kernel + (cout if bias else 0)


def conv_macs(cin: int, cout: int, kernel: int, out_size: int) -> int:
    """Multiply-adds of a convolution for one image: one kernel-sized dot product per output value."""
    return cin * kernel * kernel * cout * out_size * out_size


class _Builder:
    def __init__(self) -> None:
        self.layers: list[Layer] = []

    def conv(self, id: str, cin: int, cout: int, k: int, stride: int, size: int, bias: bool = False) -> int:
        out = conv_out_size(size, k, stride, k // 2)
        self.layers.append(
            Layer(id, "conv", cin, cout, k, stride, out, conv_params(cin, cout, k, bias), conv_macs(cin, cout, k, out))
        )
        return out

    def bn(self, id: str, c: int, size: int) -> None:
        self.layers.append(Layer(id, "bn", c, c, 1, 1, size, 2 * c, 0))

    def pool(self, id: str, c: int, k: int, stride: int, padding: int, size: int) -> int:
        out = conv_out_size(size, k, stride, padding)
        self.layers.append(Layer(id, "pool", c, c, k, stride, out, 0, 0))
        return out

    def fc(self, id: str, cin: int, cout: int) -> None:
        self.layers.append(Layer(id, "fc", cin, cout, 1, 1, 1, cin * cout + cout, cin * cout))


def _block(b: _Builder, spec: ResNetSpec, p: str, c: int, planes: int, stride: int, size: int) -> tuple[int, int]:
    """One basic or bottleneck block (and its projection shortcut, option B); returns (size, channels) after it."""
    out_c = planes * (1 if spec.block == "basic" else 4)
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
    return mid, out_c


def layers(spec: ResNetSpec, pools: bool = False) -> list[Layer]:
    """Every conv, bn and fc layer of ``spec`` in forward order; with ``pools``, the max and average pools too."""
    b = _Builder()
    size = spec.input_size
    c = spec.widths[0]
    if spec.family == "imagenet":
        size = b.conv("conv1", 3, c, 7, 2, size)
        b.bn("bn1", c, size)
        if pools:
            b.pool("maxpool", c, 3, 2, 1, size)
        size = conv_out_size(size, 3, 2, 1)  # 3x3 max pool, stride 2
    else:
        size = b.conv("conv1", 3, c, 3, 1, size)
        b.bn("bn1", c, size)
    for s, (planes, n) in enumerate(zip(spec.widths, spec.layers, strict=True)):
        for i in range(n):
            size, c = _block(b, spec, f"layer{s + 1}.{i}", c, planes, 2 if (s > 0 and i == 0) else 1, size)
    if pools:
        b.pool("avgpool", c, size, 1, 0, size)  # global average pool
    b.fc("fc", c, spec.num_classes)
    return b.layers


def vgg19_layers(input_size: int = 224, num_classes: int = 1000) -> list[Layer]:
    """VGG-19 layer by layer: 16 3x3 convs (padding 1, bias) in 5 groups, 5 max pools, 3 fc layers."""
    b = _Builder()
    size, c, group, idx = input_size, 3, 1, 1
    for item in VGG19_CONFIG:
        if item == "M":
            size = b.pool(f"pool{group}", c, 2, 2, 0, size)
            group, idx = group + 1, 1
            continue
        size = b.conv(f"conv{group}_{idx}", c, int(item), 3, 1, size, bias=True)
        c, idx = int(item), idx + 1
    features = c * size * size
    for i, out in enumerate((*VGG19_FC[:-1], num_classes)):
        b.fc(f"fc{6 + i}", features, out)
        features = out
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
