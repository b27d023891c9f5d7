#!/usr/bin/env python3
"""ONNX files from PyTorch's own exporter, for the tests of `cnnsplit import --onnx`.

Builds small (width-scaled) ResNet-18, VGG-16 and MobileNetV2 networks (the definitions of
scripts/make_torch_fixtures.py) with randomised BatchNorm statistics, and exports each twice:

  {name}.folded.onnx  torch.onnx.export's default (torch.export-based) exporter, eval mode: the
                      BatchNorms are folded into the convs; initialisers keep the module names
  {name}.bn.onnx      the TorchScript exporter with constant folding off: BatchNormalization
                      nodes kept, opset 13

plus two networks for the rest of the operator list:

  geometry.ts-folded.onnx  rectangular/strided/dilated/depthwise convs, a projection shortcut,
                      padded max- and average pools, ReLU6 as Clip with Constant bounds, Flatten;
                      TorchScript exporter with folding (weights named onnx::Conv_N, layer names
                      from the node names), opset 17
  branches.onnx       two conv branches joined by Concat, ReduceMean with keepdims, Flatten, a
                      MatMul + Add layer with a ReLU, Dropout, a Gemm; default exporter

and for each network `{name}.probe.safetensors`: `input` [2, 3, 32, 32] and PyTorch's `logits`.
Outputs go to crates/onnx-import/tests/fixtures/; CI needs only them, not PyTorch.

Usage: python scripts/make_onnx_fixtures.py   (needs torch, onnx, onnxscript, safetensors)
"""
import os
import sys

import onnx
import torch
import torch.nn as nn
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from make_torch_fixtures import VGG16, Geometry, MobileNetV2, ResNet18, randomise_bn  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "onnx-import", "tests", "fixtures")


class Branches(nn.Module):
    """Operators the three families do not use: Concat of two branches, ReduceMean keeping its
    axes, MatMul + Add, Dropout."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, 2, 1)
        self.left = nn.Conv2d(4, 3, 1)
        self.right = nn.Conv2d(4, 5, 3, 1, 1, bias=False)
        self.right_bn = nn.BatchNorm2d(5)
        self.hidden = nn.Parameter(torch.randn(8, 6) * 0.3)
        self.hidden_bias = nn.Parameter(torch.randn(6) * 0.1)
        self.drop = nn.Dropout(0.25)
        self.fc = nn.Linear(6, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.cat([torch.relu(self.left(x)), torch.relu(self.right_bn(self.right(x)))], 1)
        x = torch.flatten(x.mean((2, 3), keepdim=True), 1)
        x = torch.relu(x @ self.hidden + self.hidden_bias)
        return self.fc(self.drop(x))


def strip_provenance(path):
    """Drop the exporter's per-node stack traces and doc strings (they hold this machine's file
    paths); the graph and weights are unchanged."""
    m = onnx.load(path)
    m.doc_string = ""
    del m.metadata_props[:]
    for n in m.graph.node:
        n.doc_string = ""
        del n.metadata_props[:]
    onnx.save(m, path)


def export_default(net, x, path):
    torch.onnx.export(net, (x,), path, dynamo=True, external_data=False)
    strip_provenance(path)


def export_torchscript(net, x, path, opset, fold):
    torch.onnx.export(net, (x,), path, dynamo=False, opset_version=opset,
                      do_constant_folding=fold, input_names=["input"], output_names=["logits"])
    strip_provenance(path)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(2)
    nets = {
        "resnet18": ResNet18(0.0625),
        "vgg16": VGG16(0.0625),
        "mobilenetv2": MobileNetV2(0.125),
        "geometry": Geometry(),
        "branches": Branches(),
    }
    for name, net in nets.items():
        randomise_bn(net, gen)
        net.eval()
        x = torch.randn(2, 3, 32, 32, generator=gen)
        with torch.no_grad():
            logits = net(x)
        save_file({"input": x.contiguous(), "logits": logits.contiguous()},
                  os.path.join(OUT, f"{name}.probe.safetensors"))
        if name in ("resnet18", "vgg16", "mobilenetv2"):
            export_default(net, x, os.path.join(OUT, f"{name}.folded.onnx"))
            export_torchscript(net, x, os.path.join(OUT, f"{name}.bn.onnx"), 13, fold=False)
        elif name == "geometry":
            export_torchscript(net, x, os.path.join(OUT, "geometry.ts-folded.onnx"), 17, fold=True)
        else:
            export_default(net, x, os.path.join(OUT, "branches.onnx"))
        print(name, "exported")


if __name__ == "__main__":
    main()
