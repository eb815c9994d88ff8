"""The ResNet family of the chapter, with a shortcut gate on every residual block.

Sources: He et al. 2015, "Deep Residual Learning for Image Recognition" (Table 1 for the
ImageNet models, Section 4.2 for the CIFAR-10 models) and torchvision's ``models/resnet.py``,
whose module names we keep so that its published state dicts load unchanged.

Every block computes ``H = relu(F(x) + g * S(x))`` where ``g`` is fed at run time: all gates 1
is the residual network, all gates 0 its plain twin (the paper's "plain" network, exactly),
anything in between a mix. Forward passes can record named taps (module paths such as
``layer2.1.bn2``) so one exported graph yields every intermediate tensor the app shows.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from app.specs import BN_MODES, SPECS, ResNetSpec

Recorder = Callable[[str, Tensor], None] | None
NORMS = ("batch", "none")  # "none": every BatchNorm2d replaced by the identity (training without BN)


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (a BN follows)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution with no bias (a BN follows)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def norm_layer(planes: int, norm: str = "batch") -> nn.Module:
    """The normalisation after a convolution: ``BatchNorm2d(planes)``, or the identity for ``norm="none"``."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return nn.BatchNorm2d(planes) if norm == "batch" else nn.Identity()


def batch_norm(bn: nn.Module, x: Tensor, mode: str | None) -> Tensor:
    """Apply ``bn`` with running statistics, current-batch statistics, or the module's own mode.

    A network built with ``norm="none"`` has ``nn.Identity`` in every BN slot: ``x`` passes unchanged.
    """
    if isinstance(bn, nn.Identity):
        return x
    if mode is None:
        return bn(x)
    if mode == "running":
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    # The chapter's four steps, per channel over batch x height x width.
    mu = x.mean(dim=(0, 2, 3), keepdim=True)  # (1, C, 1, 1)
    var = ((x - mu) ** 2).mean(dim=(0, 2, 3), keepdim=True)  # population variance
    x_hat = (x - mu) * torch.rsqrt(var + bn.eps)
    return x_hat * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)


class ZeroPadShortcut(nn.Module):
    """Option A shortcut: subsample by the stride, zero-pad the new channels; no parameters."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra = out_planes - in_planes

    def forward(self, x: Tensor) -> Tensor:
        """Return x subsampled in space and padded with zero channels (half each side)."""
        x = x[:, :, :: self.stride, :: self.stride]
        before = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, before, self.extra - before))


class _Block(nn.Module):
    """Shared plumbing for both block kinds: gate, shortcut, taps."""

    expansion = 1
    path = ""  # module path, set by ResNet after construction
    bn_mode: str | None = None

    def _bn(self, name: str, x: Tensor, rec: Recorder) -> Tensor:
        conv_name = "conv" + name[2:]
        if rec is not None:
            rec(f"{self.path}.{conv_name}", x)
        y = batch_norm(getattr(self, name), x, self.bn_mode)
        if rec is not None:
            rec(f"{self.path}.{name}", y)
        return y

    def _shortcut(self, x: Tensor, rec: Recorder) -> Tensor:
        ds = self.downsample
        if ds is None:
            return x
        if isinstance(ds, ZeroPadShortcut):
            s = ds(x)
            if rec is not None:
                rec(f"{self.path}.downsample", s)
            return s
        conv, bn = ds[0], ds[1]
        z = conv(x)
        if rec is not None:
            rec(f"{self.path}.downsample.0", z)
        s = batch_norm(bn, z, self.bn_mode)
        if rec is not None:
            rec(f"{self.path}.downsample.1", s)
        return s

    def _merge(self, f: Tensor, s: Tensor, gate: Tensor, rec: Recorder, branch: Tensor | None) -> Tensor:
        if branch is not None:  # (N,): per-image factor on F(x); 0 removes the residual branch (lesion)
            f = f * branch.view(-1, 1, 1, 1)
        h = F.relu(f + gate * s)  # ReLU after the addition, as in the chapter
        if rec is not None:
            rec(self.path, h)
        return h


class BasicBlock(_Block):
    """Two 3x3 convolutions: F(x) = bn2(conv2(relu(bn1(conv1(x)))))."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, norm: str = "batch"
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes, norm)
        self.relu = nn.ReLU(inplace=False)  # in-place would overwrite recorded BN outputs
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes, norm)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor, gate: Tensor, rec: Recorder = None, branch: Tensor | None = None) -> Tensor:
        """Return relu(F(x) + gate * S(x)), recording taps when ``rec`` is given."""
        out = F.relu(self._bn("bn1", self.conv1(x), rec))
        out = self._bn("bn2", self.conv2(out), rec)
        return self._merge(out, self._shortcut(x, rec), gate, rec, branch)


class Bottleneck(_Block):
    """1x1 reduce, 3x3 (carrying the stride, as torchvision does), 1x1 restore to 4x planes."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, norm: str = "batch"
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = norm_layer(planes, norm)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = norm_layer(planes, norm)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion, norm)
        self.relu = nn.ReLU(inplace=False)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor, gate: Tensor, rec: Recorder = None, branch: Tensor | None = None) -> Tensor:
        """Return relu(F(x) + gate * S(x)), recording taps when ``rec`` is given."""
        out = F.relu(self._bn("bn1", self.conv1(x), rec))
        out = F.relu(self._bn("bn2", self.conv2(out), rec))
        out = self._bn("bn3", self.conv3(out), rec)
        return self._merge(out, self._shortcut(x, rec), gate, rec, branch)


class ResNet(nn.Module):
    """A ResNet of either family; ``forward(image, gates)`` returns the logits.

    ``norm="none"`` builds the same network with the identity in place of every batch norm.
    """

    def __init__(self, spec: ResNetSpec, norm: str = "batch") -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        self.spec = spec
        self.norm = norm
        self._bn_mode: str | None = None
        block_cls = BasicBlock if spec.block == "basic" else Bottleneck
        self.inplanes = spec.widths[0]
        if spec.family == "imagenet":
            self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module | None = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            self.conv1 = conv3x3(3, self.inplanes)
            self.maxpool = None
        self.bn1 = norm_layer(self.inplanes, norm)
        self.relu = nn.ReLU(inplace=False)
        for i, (planes, n) in enumerate(zip(spec.widths, spec.layers, strict=True)):
            stride = 1 if i == 0 else 2  # the feature map halves, the filters double
            setattr(self, f"layer{i + 1}", self._make_layer(block_cls, planes, n, stride))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(spec.widths[-1] * block_cls.expansion, spec.num_classes)
        for path, block in self.named_blocks():
            block.path = path

    def _make_layer(self, block_cls: type[_Block], planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample: nn.Module | None = None
        out_planes = planes * block_cls.expansion
        if stride != 1 or self.inplanes != out_planes:
            if self.spec.shortcut == "A":
                downsample = ZeroPadShortcut(self.inplanes, out_planes, stride)
            else:
                downsample = nn.Sequential(
                    conv1x1(self.inplanes, out_planes, stride), norm_layer(out_planes, self.norm)
                )
        layers = [block_cls(self.inplanes, planes, stride, downsample, self.norm)]
        self.inplanes = out_planes
        layers += [block_cls(self.inplanes, planes, norm=self.norm) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    @property
    def bn_mode(self) -> str | None:
        """BN statistics used in forward: None (module's train/eval), "running" or "batch"."""
        return self._bn_mode

    @bn_mode.setter
    def bn_mode(self, mode: str | None) -> None:
        if mode is not None and mode not in BN_MODES:
            raise ValueError(f"bn mode must be one of {BN_MODES}, got {mode!r}")
        self._bn_mode = mode
        for _, block in self.named_blocks():
            block.bn_mode = mode

    def stages(self) -> list[nn.Sequential]:
        """The residual stages in order (layer1, layer2, ...)."""
        return [getattr(self, f"layer{i + 1}") for i in range(len(self.spec.layers))]

    def named_blocks(self) -> list[tuple[str, _Block]]:
        """Every residual block in order with its module path (``layer2.1``)."""
        return [(f"layer{s + 1}.{i}", b) for s, stage in enumerate(self.stages()) for i, b in enumerate(stage)]

    def forward(
        self, image: Tensor, gates: Tensor | None = None, rec: Recorder = None, branch: Tensor | None = None
    ) -> Tensor:
        """Logits for ``image`` (N, 3, H, W) with shortcut ``gates`` (num_blocks,), default all 1.

        ``branch`` (N, num_blocks), when given, scales each image's residual branches F(x).
        """
        if gates is None:
            gates = torch.ones(self.spec.num_blocks, dtype=image.dtype, device=image.device)
        x = self.conv1(image)  # (N, 64, H/2, W/2) ImageNet; (N, 16, H, W) CIFAR
        if rec is not None:
            rec("conv1", x)
        x = batch_norm(self.bn1, x, self._bn_mode)
        if rec is not None:
            rec("bn1", x)
        x = self.relu(x)
        if self.maxpool is not None:
            x = self.maxpool(x)
        if rec is not None:
            rec("maxpool" if self.maxpool is not None else "relu", x)
        for i, (_, block) in enumerate(self.named_blocks()):
            x = block(x, gates[i], rec, None if branch is None else branch[:, i])
        x = torch.flatten(self.avgpool(x), 1)  # (N, C): global average pooling
        return self.fc(x)


def init_weights(model: ResNet, seed: int = 0) -> ResNet:
    """Seeded He initialisation (kaiming normal, fan_out), BN weight 1 and bias 0."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
                m.weight.normal_(0.0, (2.0 / fan_out) ** 0.5, generator=gen)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.bias.zero_()
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / m.in_features**0.5
                m.weight.uniform_(-bound, bound, generator=gen)
                m.bias.uniform_(-bound, bound, generator=gen)
    return model


def build(name: str, seed: int = 0, norm: str = "batch") -> ResNet:
    """A model of the family by name, He-initialised with ``seed``, in eval mode (``norm="none"``: no BN)."""
    if name not in SPECS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(SPECS)}")
    return init_weights(ResNet(SPECS[name], norm), seed).eval()


def count_params(model: nn.Module) -> int:
    """Number of learnable parameters."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: ResNet) -> dict[str, int]:
    """Multiply-adds of every conv and fc layer for one input at the spec's size, by module path."""
    macs: dict[str, int] = {}
    hooks = []
    for path, m in model.named_modules():
        if isinstance(m, nn.Conv2d):

            def conv_hook(mod: nn.Conv2d, _inp: tuple, out: Tensor, path: str = path) -> None:
                k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
                macs[path] = out[0].numel() * k

            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):

            def fc_hook(mod: nn.Linear, _inp: tuple, out: Tensor, path: str = path) -> None:
                macs[path] = out[0].numel() * mod.in_features

            hooks.append(m.register_forward_hook(fc_hook))
    size = model.spec.input_size
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    return macs
