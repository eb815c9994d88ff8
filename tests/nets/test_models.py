"""Model definitions: parameter and MAC counts, layer arithmetic against torch, shortcut gates."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from app import arch
from app.nets.resnet import build, count_macs, count_params
from app.specs import SPECS

EXACT = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}
PAPER_CIFAR = {
    "resnet20": 0.27e6,
    "resnet32": 0.46e6,
    "resnet44": 0.66e6,
    "resnet56": 0.85e6,
    "resnet110": 1.7e6,
    "resnet1202": 19.4e6,
}


@pytest.mark.parametrize("name", list(EXACT))
def test_imagenet_param_counts_exact(name: str) -> None:
    assert count_params(build(name)) == EXACT[name]
    assert arch.summary(SPECS[name])["params"] == EXACT[name]


@pytest.mark.parametrize("name", list(PAPER_CIFAR))
def test_cifar_param_counts_match_paper(name: str) -> None:
    n = arch.summary(SPECS[name])["params"]
    assert abs(n - PAPER_CIFAR[name]) / PAPER_CIFAR[name] < 0.02
    if name != "resnet1202":
        assert count_params(build(name)) == n


def _check_layers_against_torch(name: str) -> None:
    model = build(name)
    modules = dict(model.named_modules())
    macs = count_macs(model)
    layers = arch.layers(SPECS[name])
    torch_layers = [p for p, m in modules.items() if isinstance(m, nn.Conv2d | nn.BatchNorm2d | nn.Linear)]
    assert [layer.id for layer in layers] == torch_layers
    for layer in layers:
        m = modules[layer.id]
        assert layer.params == sum(p.numel() for p in m.parameters()), layer.id
        if layer.kind != "bn":
            assert layer.macs == macs[layer.id], layer.id


@pytest.mark.parametrize("name", ["resnet20", "resnet18", "resnet50"])
def test_arch_layers_match_torch_modules(name: str) -> None:
    _check_layers_against_torch(name)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["resnet34", "resnet101", "resnet152", "resnet32", "resnet44", "resnet56", "resnet110"]
)
def test_arch_layers_match_torch_modules_all(name: str) -> None:
    _check_layers_against_torch(name)


def test_depth_by_the_chapter_rule() -> None:
    assert [SPECS[n].depth for n in EXACT] == [18, 34, 50, 101, 152]
    assert [SPECS[n].depth for n in PAPER_CIFAR] == [20, 32, 44, 56, 110, 1202]


def test_resnet50_macs_torchvision_layout() -> None:
    # Stride on the bottleneck's 3x3 (torchvision) costs 4.09 GMACs against the paper's 3.8.
    assert round(arch.summary(SPECS["resnet50"])["macs"] / 1e9, 2) == 4.09
    assert round(arch.summary(SPECS["resnet18"])["macs"] / 1e9, 1) == 1.8


def test_seeded_init_is_deterministic() -> None:
    a, b, c = build("resnet20", seed=0), build("resnet20", seed=0), build("resnet20", seed=1)
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(v, w), k
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def _plain_stages(cin: int, widths: tuple[int, ...], blocks: int) -> list[nn.Module]:
    """Pairs of 3x3 conv + BN + ReLU per stage, the first of a later stage with stride 2."""
    layers: list[nn.Module] = []
    for stage, width in enumerate(widths):
        for i in range(blocks):
            stride = 2 if stage > 0 and i == 0 else 1
            layers += [
                nn.Conv2d(cin, width, 3, stride, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.Conv2d(width, width, 3, 1, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
            ]
            cin = width
    return layers


class PlainCifarNet(nn.Module):
    """The paper's plain CIFAR network written out with no shortcut code at all."""

    def __init__(self, n: int) -> None:
        super().__init__()
        stem: list[nn.Module] = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
        self.features = nn.Sequential(*stem, *_plain_stages(16, (16, 32, 64), n))
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


class PlainImageNet18(nn.Module):
    """Plain 18-layer ImageNet network with no shortcut code."""

    def __init__(self) -> None:
        super().__init__()
        stem: list[nn.Module] = [
            nn.Conv2d(3, 64, 7, 2, 3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        ]
        self.features = nn.Sequential(*stem, *_plain_stages(64, (64, 128, 256, 512), 2))
        self.fc = nn.Linear(512, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def _copy_into_plain(model: nn.Module, plain: nn.Module) -> None:
    """Copy conv/bn/fc weights in forward order, skipping the residual net's shortcut layers."""
    src = [m for p, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.BatchNorm2d) and "downsample" not in p]
    dst = [m for m in plain.features if isinstance(m, nn.Conv2d | nn.BatchNorm2d)]
    assert len(src) == len(dst)
    for s, d in zip(src, dst, strict=True):
        d.load_state_dict(s.state_dict())
    plain.fc.load_state_dict(model.fc.state_dict())


def _randomize_bn(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0, 0.1, generator=g)


@pytest.mark.parametrize(
    ("name", "plain_cls", "size"), [("resnet20", lambda: PlainCifarNet(3), 32), ("resnet18", PlainImageNet18, 64)]
)
def test_all_gates_zero_is_the_plain_network(name: str, plain_cls, size: int) -> None:  # noqa: ANN001
    model = build(name)
    _randomize_bn(model)
    plain = plain_cls().eval()
    _copy_into_plain(model, plain)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        gated = model(x, torch.zeros(model.spec.num_blocks))
        ref = plain(x)
        residual = model(x)
    torch.testing.assert_close(gated, ref, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(residual, ref, atol=1e-3)
