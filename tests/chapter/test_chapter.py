"""The chapter's figures (app.chapter) against the chapter's numbers and against torch modules built here."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient
from torch import nn

from app import arch, chapter
from app.config import Settings
from app.main import create_app
from app.specs import SPECS, ResNetSpec

META = torch.device("meta")  # shapes and parameter counts without allocating weights


# ---------------------------------------------------------------- torch models, built independently of app.nets


class _Block(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int, bottleneck: bool, shortcut: str) -> None:
        super().__init__()
        out = planes * (4 if bottleneck else 1)
        self.bottleneck = bottleneck
        if bottleneck:  # torchvision layout: the stride sits on the 3x3
            self.conv1 = nn.Conv2d(cin, planes, 1, bias=False, device=META)
            self.bn1 = nn.BatchNorm2d(planes, device=META)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False, device=META)
            self.bn2 = nn.BatchNorm2d(planes, device=META)
            self.conv3 = nn.Conv2d(planes, out, 1, bias=False, device=META)
            self.bn3 = nn.BatchNorm2d(out, device=META)
        else:
            self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False, device=META)
            self.bn1 = nn.BatchNorm2d(planes, device=META)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False, device=META)
            self.bn2 = nn.BatchNorm2d(planes, device=META)
        self.pad = 0
        self.stride = stride
        if (stride != 1 or cin != out) and shortcut == "B":
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, out, 1, stride, bias=False, device=META), nn.BatchNorm2d(out, device=META)
            )
        else:
            self.downsample = None
            self.pad = out - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.bottleneck:
            y = self.bn3(self.conv3(F.relu(y)))
        if self.downsample is not None:
            s = self.downsample(x)
        else:
            s = x[:, :, :: self.stride, :: self.stride]
            s = F.pad(s, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(y + s)


class _ResNet(nn.Module):
    def __init__(self, spec: ResNetSpec, shortcuts: bool = True) -> None:
        super().__init__()
        c = spec.widths[0]
        imagenet = spec.family == "imagenet"
        self.conv1 = nn.Conv2d(3, c, 7 if imagenet else 3, 2 if imagenet else 1, 3 if imagenet else 1, bias=False)
        self.conv1 = self.conv1.to(META)
        self.bn1 = nn.BatchNorm2d(c, device=META)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if imagenet else nn.Identity()
        bottleneck = spec.block == "bottleneck"
        for s, (planes, n) in enumerate(zip(spec.widths, spec.layers, strict=True)):
            blocks = []
            for i in range(n):
                blocks.append(_Block(c, planes, 2 if s > 0 and i == 0 else 1, bottleneck, spec.shortcut))
                c = planes * (4 if bottleneck else 1)
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.n_stages = len(spec.layers)
        self.fc = nn.Linear(c, spec.num_classes, device=META)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        for s in range(self.n_stages):
            x = getattr(self, f"layer{s + 1}")(x)
        return self.fc(x.mean(dim=(2, 3)))


def _vgg19() -> nn.Sequential:
    layers: list[nn.Module] = []
    c = 3
    for v in chapter.VGG19_CONFIG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, int(v), 3, padding=1, device=META), nn.ReLU()]
            c = int(v)
    layers += [
        nn.Flatten(),
        nn.Linear(512 * 7 * 7, 4096, device=META),
        nn.ReLU(),
        nn.Linear(4096, 4096, device=META),
        nn.ReLU(),
        nn.Linear(4096, 1000, device=META),
    ]
    return nn.Sequential(*layers)


def _measure(model: nn.Module, size: int) -> tuple[dict[str, int], dict[str, int]]:
    """Parameters of every conv/bn/linear module, and multiply-adds of every conv/linear, by module path."""
    params: dict[str, int] = {}
    macs: dict[str, int] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d | nn.BatchNorm2d | nn.Linear):
            params[name] = sum(p.numel() for p in m.parameters())
        if isinstance(m, nn.Conv2d):

            def conv_hook(mod: nn.Conv2d, _i: tuple, out: torch.Tensor, name: str = name) -> None:
                macs[name] = out[0].numel() * mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1]

            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):

            def fc_hook(mod: nn.Linear, _i: tuple, out: torch.Tensor, name: str = name) -> None:
                macs[name] = out[0].numel() * mod.in_features

            hooks.append(m.register_forward_hook(fc_hook))
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size, device=META))
    for h in hooks:
        h.remove()
    return params, macs


@pytest.fixture(scope="module")
def figs() -> dict:
    return chapter.chapter_figures()


# ---------------------------------------------------------------- Example 5-3 and 5.2.2


def test_block_params_example_5_3(figs: dict) -> None:
    assert figs["basic_block_params"] == 3 * 3 * 256 * 256 * 2 == 1_179_648
    assert figs["bottleneck_block_params"] == 1 * 1 * 256 * 64 + 3 * 3 * 64 * 64 + 1 * 1 * 64 * 256 == 69_632
    assert round(figs["bottleneck_reduction"], 3) == 0.941
    assert figs["bottleneck_reduction_text"] == "94.1% fewer"
    # the same blocks built in torch
    basic = _Block(256, 256, 1, False, "B")
    bottleneck = _Block(256, 64, 1, True, "B")
    convs = lambda m: sum(p.numel() for n, p in m.named_parameters() if n.startswith("conv"))  # noqa: E731
    assert convs(basic) == figs["basic_block_params"]
    assert convs(bottleneck) == figs["bottleneck_block_params"]


def test_small_kernel_ratios(figs: dict) -> None:
    assert figs["ratio_two_3x3_vs_5x5"] == pytest.approx(0.72)
    assert round(figs["ratio_three_3x3_vs_7x7"], 2) == 0.55
    assert figs["ratio_three_3x3_vs_7x7"] == pytest.approx(27 / 49)
    c = 64
    two = 2 * nn.Conv2d(c, c, 3, bias=False, device=META).weight.numel()
    five = nn.Conv2d(c, c, 5, bias=False, device=META).weight.numel()
    assert figs["stacked_3x3"][0]["stacked_params"] == two
    assert figs["stacked_3x3"][0]["single_params"] == five


@pytest.mark.parametrize("n", [5, 7, 12, 64])
def test_output_size_demo(n: int) -> None:
    d = chapter.output_size_demo(n)
    assert d["one_5x5"] == [n - 4, n - 4]
    assert d["two_3x3_after_first"] == [n - 2, n - 2]
    assert d["two_3x3"] == [n - 4, n - 4] and d["n_minus_4"] == n - 4
    assert d["receptive_field_5x5"] == d["receptive_field_two_3x3"] == 5
    x = torch.zeros(1, 1, n, n)
    assert F.conv2d(x, torch.zeros(1, 1, 5, 5)).shape[-1] == n - 4
    assert F.conv2d(F.conv2d(x, torch.zeros(1, 1, 3, 3)), torch.zeros(1, 1, 3, 3)).shape[-1] == n - 4


@pytest.mark.parametrize("n", [4, 65, -1])
def test_output_size_demo_rejects_bad_n(n: int) -> None:
    with pytest.raises(ValueError, match="between 5 and 64"):
        chapter.output_size_demo(n)


def test_one_by_one_conv(figs: dict) -> None:
    s = figs["one_by_one_conv"]["scale"]
    x = np.array(s["input"])
    assert x.shape == (6, 6) and s["kernel"] == 3
    assert np.array_equal(np.array(s["output"]), 3 * x) and s["tripled"]
    conv = nn.Conv2d(1, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(3.0)
        out = conv(torch.tensor(x, dtype=torch.float32)[None, None])
    assert np.allclose(out[0, 0].numpy(), s["output"])
    c = figs["one_by_one_conv"]["channels"]
    assert c["output_shape"] == [6, 6, 28] and c["input_shape"] == [6, 6, 64]
    assert c["params"] == nn.Conv2d(64, 28, 1, bias=False, device=META).weight.numel() == 1792
    assert c["params_with_bias"] == sum(p.numel() for p in nn.Conv2d(64, 28, 1, device=META).parameters())
    assert c["per_pixel_dot_product"]


# ---------------------------------------------------------------- 5.2.1 worked examples


def test_worked_example_5_to_5_1(figs: dict) -> None:
    w = figs["worked_example_5_to_5_1"]
    assert w["plain"]["before"] == 5.1 and w["residual"]["before"] == pytest.approx(0.1)
    assert w["plain"]["relative_change"] == pytest.approx(1 / 51)
    assert round(w["plain"]["relative_change"], 2) == 0.02
    assert w["residual"]["relative_change"] == pytest.approx(1.0)
    assert "1/51" in w["text"] and "100%" in w["text"]


def test_shortcut_channel_example(figs: dict) -> None:
    s = figs["shortcut_channel_example"]
    assert (s["in_channels"], s["out_channels"], s["stride"]) == (64, 128, 2)
    assert s["option_b"]["params"] == nn.Conv2d(64, 128, 1, bias=False, device=META).weight.numel() == 8192
    assert s["option_a"] == {"params": 0, "zero_channels": 64}
    assert "63" in s["correction"] and "64" in s["correction"]


def test_residual_gradient(figs: dict) -> None:
    assert all(r["H_prime"] == r["F_prime"] + 1 for r in figs["residual_gradient"]["rows"])


# ---------------------------------------------------------------- 5.3: layer counting, Table 5-1, CIFAR, Fig. 5-8


@pytest.mark.parametrize(
    ("depth", "formula"),
    [
        (18, "1 + 8 x 2 + 1 = 18"),
        (34, "1 + 16 x 2 + 1 = 34"),
        (50, "1 + 16 x 3 + 1 = 50"),
        (101, "1 + 33 x 3 + 1 = 101"),
        (152, "1 + 50 x 3 + 1 = 152"),
        (1202, "1 + 600 x 2 + 1 = 1202"),
    ],
)
def test_layer_count(figs: dict, depth: int, formula: str) -> None:
    r = figs["layer_count"][str(depth)]
    assert r["formula"].endswith(formula)
    assert r["total"] == r["arch_weight_layers"] == depth and r["matches"]
    model = _ResNet(SPECS[r["name"]])
    weight_layers = [
        n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear) and "downsample" not in n
    ]
    assert len(weight_layers) == depth


def test_table_5_1_configuration(figs: dict) -> None:
    t = figs["table_5_1"]["imagenet"]
    rows = {r["stage"]: r for r in t["stages"]}
    assert [r["stage"] for r in t["stages"]] == ["conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x", "head"]
    assert [r["output_size"] for r in t["stages"]] == [112, 56, 28, 14, 7, 1]
    assert rows["conv1"]["cells"]["resnet50"]["text"] == "7x7, 64, stride 2"
    assert rows["conv2_x"]["cells"]["resnet18"]["text"] == "3x3 max pool, stride 2; [3x3, 64; 3x3, 64] x 2"
    assert rows["conv2_x"]["cells"]["resnet50"]["text"].endswith("[1x1, 64; 3x3, 64; 1x1, 256] x 3")
    assert rows["conv3_x"]["cells"]["resnet34"]["text"] == "[3x3, 128; 3x3, 128] x 4"
    assert rows["conv3_x"]["cells"]["resnet152"]["text"] == "[1x1, 128; 3x3, 128; 1x1, 512] x 8"
    assert rows["conv4_x"]["cells"]["resnet101"]["text"] == "[1x1, 256; 3x3, 256; 1x1, 1024] x 23"
    assert rows["conv4_x"]["cells"]["resnet152"]["text"] == "[1x1, 256; 3x3, 256; 1x1, 1024] x 36"
    assert rows["conv5_x"]["cells"]["resnet34"]["text"] == "[3x3, 512; 3x3, 512] x 3"
    assert rows["head"]["cells"]["resnet18"]["text"] == "global average pool, 1000-d fc, softmax"
    for name in t["models"]:
        assert sum(r["cells"][name]["params"] for r in t["stages"]) == t["totals"][name]["params"]
        assert sum(r["cells"][name]["macs"] for r in t["stages"]) == t["totals"][name]["macs"]


def test_table_5_1_flops_and_params(figs: dict) -> None:
    t = figs["table_5_1"]["imagenet"]["totals"]
    for name, ref in chapter.TORCHVISION_PARAMS.items():
        assert t[name]["params"] == ref
    # torchvision layout: 4.09e9 for ResNet-50 against the paper's 3.8e9
    assert round(t["resnet50"]["gmacs"], 2) == 4.09 and t["resnet50"]["paper_gmacs"] == 3.8
    assert round(figs["resnet50_gmacs"], 2) == 4.09
    assert abs(t["resnet34"]["gmacs"] - 3.6) < 0.1
    # with the stride on the first 1x1 (the original layout) every model lands within 2% of the paper
    for name, paper in chapter.PAPER_GMACS.items():
        assert abs(t[name]["paper_layout_gmacs"] / paper - 1) < 0.02, name
    note = figs["table_5_1"]["notes"][0]
    assert "4.09e9" in note and "3.8e9" in note and "3.86e9" in note


def test_cifar_family(figs: dict) -> None:
    t = figs["table_5_1"]["cifar"]
    assert [r["output_size"] for r in t["stages"]] == [32, 32, 16, 8, 1]
    assert t["stages"][1]["cells"]["resnet20"]["text"] == "[3x3, 16; 3x3, 16] x 3"
    assert t["stages"][3]["cells"]["resnet1202"]["text"] == "[3x3, 64; 3x3, 64] x 200"
    rows = {r["name"]: r for r in figs["cifar_table"]}
    assert [r["depth"] for r in figs["cifar_table"]] == [20, 32, 44, 56, 110, 1202]
    for name, paper_m in chapter.PAPER_CIFAR_PARAMS_M.items():
        assert abs(rows[name]["params"] / (paper_m * 1e6) - 1) < 0.02, name


def test_vgg19_vs_resnet34(figs: dict) -> None:
    nets = {n["name"]: n for n in figs["vgg19_vs_resnet34"]["networks"]}
    vgg, plain, res = nets["VGG-19"], nets["plain-34"], nets["ResNet-34"]
    assert round(vgg["macs"] / 1e9, 1) == 19.6
    assert round(res["macs"] / 1e9, 1) in (3.6, 3.7) and abs(res["macs"] / 1e9 - 3.6) < 0.1
    assert abs(plain["macs"] / 1e9 - 3.6) < 0.1
    assert vgg["weight_layers"] == 19 and plain["weight_layers"] == 34 and res["weight_layers"] == 34
    assert res["shortcut_convs"] == 3 and plain["shortcut_convs"] == 0
    # plain-34 is ResNet-34 minus the projection shortcuts
    proj = [la for la in arch.layers(SPECS["resnet34"]) if ".downsample." in la.id]
    assert res["macs"] - plain["macs"] == sum(la.macs for la in proj)
    assert res["params"] - plain["params"] == sum(la.params for la in proj)
    plain_model = _ResNet(SPECS["resnet34"])
    for block in (m for m in plain_model.modules() if isinstance(m, _Block)):
        block.downsample = None
    assert sum(p.numel() for p in plain_model.parameters()) == plain["params"]
    # VGG-19 against torch, layer by layer
    params, macs = _measure(_vgg19(), 224)
    rows = [r for r in vgg["layers"] if r["kind"] in ("conv", "fc")]
    assert [r["params"] for r in rows] == list(params.values())
    assert [r["macs"] for r in rows] == list(macs.values())
    assert vgg["params"] == sum(params.values()) == 143_667_240


@pytest.mark.parametrize(
    "name",
    [
        "resnet18",
        "resnet34",
        "resnet20",
        "resnet56",
        "resnet50",
        "resnet101",
        "resnet152",
        "resnet110",
    ],
)
def test_arch_counts_match_torch(name: str) -> None:
    """Every layer's parameters and multiply-adds (cheap even for ResNet-152: the modules live on 'meta')."""
    spec = SPECS[name]
    params, macs = _measure(_ResNet(spec), spec.input_size)
    layers = arch.layers(spec)
    assert {la.id: la.params for la in layers} == params
    assert {la.id: la.macs for la in layers if la.kind != "bn"} == macs
    assert arch.summary(spec)["params"] == sum(params.values())


def test_paper_layout_macs_against_torch() -> None:
    """Moving the bottleneck's stride to the first 1x1 (the original model) gives the computed 'paper layout' MACs."""
    spec = SPECS["resnet50"]
    model = _ResNet(spec)
    for stage in (model.layer2, model.layer3, model.layer4):
        b = stage[0]
        b.conv1.stride, b.conv2.stride = (2, 2), (1, 1)
    _, macs = _measure(model, 224)
    assert sum(macs.values()) == chapter.paper_layout_macs(spec)


# ---------------------------------------------------------------- CLI, API, pages, import hygiene


def test_cli_json_and_summary(capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["chapter", "--json"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out) == chapter.chapter_figures()
    args = parser.parse_args(["chapter"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "1,179,648" in out and "69,632" in out and "94.1% fewer" in out and "1 + 33 x 3 + 1 = 101" in out


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    tmp = tmp_path_factory.mktemp("chapter")
    with TestClient(create_app(Settings(models_dir=tmp, data_dir=tmp, export_on_start=False))) as c:
        yield c


def test_api_chapter(client: TestClient, figs: dict) -> None:
    r = client.get("/api/chapter")
    assert r.status_code == 200
    body = r.json()
    assert body == figs
    for key in (
        "basic_block_params",
        "bottleneck_block_params",
        "bottleneck_reduction",
        "ratio_two_3x3_vs_5x5",
        "ratio_three_3x3_vs_7x7",
        "layer_count",
        "table_5_1",
        "cifar_table",
        "vgg19_vs_resnet34",
        "one_by_one_conv",
        "output_size_demo",
        "worked_example_5_to_5_1",
    ):
        assert key in body
    assert client.get("/api/chapter?n=11").json()["output_size_demo"]["two_3x3"] == [7, 7]


@pytest.mark.parametrize("n", ["3", "100", "seven", "7.5"])
def test_api_chapter_bad_n(client: TestClient, n: str) -> None:
    r = client.get(f"/api/chapter?n={n}")
    assert r.status_code == 400
    assert "between 5 and 64" in r.json()["detail"]


def test_architecture_page(client: TestClient) -> None:
    r = client.get("/architecture")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    html = r.text
    assert "/static/js/architecture.js" in html and "/static/css/chapter.css" in html
    assert "/static/vendor/plotly.min.js" in html and "https://" not in html
    for path in ("/static/js/architecture.js", "/static/css/chapter.css"):
        assert client.get(path).status_code == 200


def test_server_imports_neither_torch_nor_scipy() -> None:
    code = (
        "import sys, app.main, app.chapter, app.regression, app.api.chapter\n"
        "app.chapter.chapter_figures()\n"
        "bad = [m for m in ('torch', 'scipy') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
