#!/usr/bin/env python3
"""Ground truth from PyTorch for cnnsplit's ResNet-18, VGG-16 and MobileNetV2 presets and for
the layer geometry they and ONNX graphs need (rectangular, strided, dilated and depthwise
convs, padded max- and average pools, ReLU6).

For each network it writes, under crates/cnn-models/tests/fixtures/torch/:
  {name}.safetensors   the state_dict (torchvision-style names), BN statistics randomised
  {name}.probe.safetensors  `input` [2, 3, 32, 32] (or the net's input) and PyTorch's `logits`
and for the geometry net also geometry.spec.json, the cnnsplit ModelSpec of the same network.

The networks are written here layer by layer to match cnnsplit's presets (design §3.5) at
small widths, so the files stay a few hundred KiB. CI needs only the outputs, not PyTorch.

Usage: python scripts/make_torch_fixtures.py   (needs torch, safetensors)
"""
import json
import os

import torch
import torch.nn as nn
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "cnn-models", "tests", "fixtures", "torch")


def scaled(width, c):
    return max(1, int(round(width * c)))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        skip = x if self.downsample is None else self.downsample(x)
        return torch.relu(y + skip)


class ResNet18(nn.Module):
    def __init__(self, width, classes=10):
        super().__init__()
        c = scaled(width, 64)
        self.conv1 = nn.Conv2d(3, c, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        cin = c
        for s, base in enumerate([64, 128, 256, 512]):
            cout = scaled(width, base)
            blocks = []
            for b in range(2):
                stride = 2 if s > 0 and b == 0 else 1
                blocks.append(BasicBlock(cin, cout, stride))
                cin = cout
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        for s in range(4):
            x = getattr(self, f"layer{s + 1}")(x)
        return self.fc(x.mean((2, 3)))


class VGG16(nn.Module):
    def __init__(self, width, classes=10):
        super().__init__()
        layers, cin = [], 3
        for c in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
            if c == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                cout = scaled(width, c)
                layers += [nn.Conv2d(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.ReLU()]
                cin = cout
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def conv_bn_relu6(cin, cout, k, stride, groups=1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(),
    )


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, t):
        super().__init__()
        hidden = cin * t
        layers = []
        if t != 1:
            layers.append(conv_bn_relu6(cin, hidden, 1, 1))
        layers += [
            conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, 1, 0, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, width, classes=10):
        super().__init__()
        cin = scaled(width, 32)
        feats = [conv_bn_relu6(3, cin, 3, 1)]
        for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2),
                           (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
            cout = scaled(width, c)
            for i in range(n):
                feats.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        feats.append(conv_bn_relu6(cin, scaled(width, 1280), 1, 1))
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(scaled(width, 1280), classes))

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3)))


class Geometry(nn.Module):
    """Every new layer type once: rectangular kernel/stride/padding, dilation, a depthwise conv
    with stride and dilation, padded max-pool, average pools with and without counting padding,
    ReLU6, a projection shortcut."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 6, (3, 5), (1, 2), (1, 2))
        self.stem_bn = nn.BatchNorm2d(6)
        self.dilated = nn.Conv2d(6, 6, 3, 1, 2, dilation=2)
        self.dw = nn.Conv2d(6, 6, 3, 2, 2, dilation=2, groups=6, bias=False)
        self.dw_bn = nn.BatchNorm2d(6)
        self.proj = nn.Conv2d(6, 5, 1, bias=False)
        self.proj_bn = nn.BatchNorm2d(5)
        self.short = nn.Conv2d(6, 5, 1, 2, bias=False)
        self.short_bn = nn.BatchNorm2d(5)
        self.mp = nn.MaxPool2d(3, 2, 1)
        self.ap = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        self.ap2 = nn.AvgPool2d(3, 2, 1, count_include_pad=True)
        self.fc = nn.Linear(5 * 2 * 1, 10)

    def forward(self, x):
        x = torch.relu(self.stem_bn(self.stem(x)))          # 6×32×16
        x = torch.relu(self.dilated(x))                     # 6×32×16
        saved = x
        y = torch.nn.functional.relu6(self.dw_bn(self.dw(x)))  # 6×16×8
        y = self.proj_bn(self.proj(y))                       # 5×16×8
        x = torch.relu(y + self.short_bn(self.short(saved)))
        x = self.mp(x)                                       # 5×8×4
        x = torch.nn.functional.relu6(self.ap(x))            # 5×8×4
        x = self.ap2(x)                                      # 5×4×2
        x = self.mp(x)                                       # 5×2×1
        return self.fc(torch.flatten(x, 1))


def geometry_spec():
    def conv(name, out, k, stride=1, padding=0, dilation=1, groups=1, bias=True, bn=None,
             relu=True, relu6=False):
        c = {"op": "conv", "name": name, "out_channels": out, "kernel": k, "stride": stride,
             "padding": padding, "dilation": dilation, "groups": groups, "bias": bias,
             "bn": bn, "relu": relu, "relu6": relu6}
        return c
    return {
        "name": "geometry",
        "input": {"channels": 3, "height": 32, "width": 32},
        "num_classes": 10,
        "layers": [
            conv("stem", 6, [3, 5], [1, 2], [1, 2], bn="stem_bn"),
            conv("dilated", 6, 3, padding=2, dilation=2),
            {"op": "save", "slot": "s"},
            conv("dw", 6, 3, 2, 2, dilation=2, groups=6, bias=False, bn="dw_bn", relu6=True),
            conv("proj", 5, 1, bias=False, bn="proj_bn", relu=False),
            {"op": "add", "slot": "s", "shortcut": [
                conv("short", 5, 1, 2, bias=False, bn="short_bn", relu=False)]},
            {"op": "relu"},
            {"op": "max_pool", "kernel": 3, "stride": 2, "padding": 1},
            {"op": "avg_pool", "kernel": 3, "stride": 1, "padding": 1, "count_include_pad": False},
            {"op": "relu6"},
            {"op": "avg_pool", "kernel": 3, "stride": 2, "padding": 1, "count_include_pad": True},
            {"op": "max_pool", "kernel": 3, "stride": 2, "padding": 1},
            {"op": "flatten"},
            {"op": "linear", "name": "fc", "out_features": 10},
        ],
    }


def randomise_bn(model, gen):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.2)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    nets = {
        "resnet18": ResNet18(0.0625),
        "vgg16": VGG16(0.0625),
        "mobilenetv2": MobileNetV2(0.125),
        "geometry": Geometry(),
    }
    for name, net in nets.items():
        randomise_bn(net, gen)
        net.eval()
        x = torch.randn(2, 3, 32, 32, generator=gen)
        with torch.no_grad():
            logits = net(x)
        state = {k: v.contiguous() for k, v in net.state_dict().items()
                 if not k.endswith("num_batches_tracked")}
        save_file(state, os.path.join(OUT, f"{name}.safetensors"))
        save_file({"input": x.contiguous(), "logits": logits.contiguous()},
                  os.path.join(OUT, f"{name}.probe.safetensors"))
        print(name, sum(v.numel() for v in state.values()), "values")
    with open(os.path.join(OUT, "geometry.spec.json"), "w") as f:
        json.dump(geometry_spec(), f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
