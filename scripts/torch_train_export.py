#!/usr/bin/env python3
"""Train one of the ResNet-18 / VGG-16 / MobileNetV2 networks of scripts/make_torch_fixtures.py
in PyTorch on a Fashion-MNIST folder (IDX files, e.g. the bundled subset), then export it with
torch.onnx.export for `cnnsplit import --onnx` — the "bring your own model" path of the README.

Images get the input cnnsplit gives Fashion-MNIST models: 28×28 zero-padded (centred) to 32×32,
scaled to [0, 1], normalised with mean 0.2860 and std 0.3530, repeated to 3 channels. Writes
OUT (the .onnx file) and OUT with .json: the PyTorch version, settings, time and test accuracy.

Usage: python scripts/torch_train_export.py --arch resnet18 --width 0.25 --epochs 8 \
           --data datasets/fashion-mnist-small --out runs/byom/resnet18.onnx
(needs torch, onnx, onnxscript)
"""
import argparse
import gzip
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from make_torch_fixtures import VGG16, MobileNetV2, ResNet18  # noqa: E402

MEAN, STD = 0.2860, 0.3530


def read_idx(path):
    with (gzip.open(path) if path.endswith(".gz") else open(path, "rb")) as f:
        raw = f.read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(folder, split):
    def find(stem):
        for name in (stem, stem + ".gz"):
            if os.path.exists(os.path.join(folder, name)):
                return os.path.join(folder, name)
        raise SystemExit(f"{folder}: no {stem}[.gz]")

    images = read_idx(find(f"{split}-images-idx3-ubyte"))
    labels = read_idx(find(f"{split}-labels-idx1-ubyte"))
    x = np.zeros((len(images), 32, 32), np.float32)
    x[:, 2:30, 2:30] = images / 255.0
    x = (x - MEAN) / STD
    x = np.repeat(x[:, None], 3, axis=1)
    return torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", choices=["resnet18", "vgg16", "mobilenetv2"], default="resnet18")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-last", type=int, default=0,
                   help="hold out the last N training images (import with --val-last N)")
    p.add_argument("--data", default="datasets/fashion-mnist-small")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    net = {"resnet18": ResNet18, "vgg16": VGG16, "mobilenetv2": MobileNetV2}[a.arch](a.width)
    xtr, ytr = load(a.data, "train")
    if a.val_last:
        xtr, ytr = xtr[: -a.val_last], ytr[: -a.val_last]
    xte, yte = load(a.data, "t10k")
    opt = torch.optim.SGD(net.parameters(), lr=a.lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.epochs)
    start = time.time()
    for epoch in range(a.epochs):
        net.train()
        order = torch.randperm(len(xtr))
        for i in range(0, len(order), a.batch_size):
            idx = order[i : i + a.batch_size]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xtr[idx]), ytr[idx]).backward()
            opt.step()
        sched.step()
        print(f"epoch {epoch + 1}/{a.epochs} done after {time.time() - start:.0f} s", flush=True)
    train_s = time.time() - start
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(xte[i : i + 500]).argmax(1) for i in range(0, len(xte), 500)])
    acc = float((pred == yte).float().mean())
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    torch.onnx.export(net, (xte[:2],), a.out, dynamo=True, external_data=False, verbose=False)
    record = {
        "arch": a.arch, "width": a.width, "epochs": a.epochs, "batch_size": a.batch_size,
        "lr": a.lr, "seed": a.seed, "val_last": a.val_last, "train_images": len(xtr), "test_images": len(xte),
        "test_accuracy": acc, "train_seconds": round(train_s, 1),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }
    with open(os.path.splitext(a.out)[0] + ".json", "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
