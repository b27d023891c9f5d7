"""cnnsplit from Python, notebook style: train a SimCNN on the bundled Fashion-MNIST subset,
decompose it into class modules with GradSplitter, compose the modules, patch a weak model's
weakest class with its module, and plot the kernel retention rate (KRR) per class.

Run from the repository root after installing the package (README, "Python"):

    python examples/python/quickstart.py            # a few minutes on a laptop CPU

Everything is written under runs/python-quickstart/ (delete it to start over). The plot needs
matplotlib (skipped otherwise); progress bars need tqdm (plain output otherwise).
"""

import os
import shutil

import numpy as np

import cnnsplit

OUT = "runs/python-quickstart"
shutil.rmtree(OUT, ignore_errors=True)

# %% the bundled data: 6,000 training and 1,000 test images of 10 clothing classes
data = cnnsplit.load_dataset("fashion-mnist")
print(data)

# %% train a small SimCNN (width 0.125) for a few epochs on part of the training split
model, report = cnnsplit.train(
    data, f"{OUT}/model", arch="simcnn", width=0.125, epochs=3, limit=1500, batch_size=64, milestones=()
)
print(f"model: test accuracy {report['test_accuracy']:.2%} ({report['kernels']} kernels)")

# predictions straight from NumPy: raw uint8 images in, logits out
images, labels = data.images("test"), data.labels("test")
logits = model.predict(images[:8])
print("predicted:", [model.class_names[i] for i in logits.argmax(1)])
print("true:     ", [model.class_names[i] for i in labels[:8]])

# %% decompose it into one module per class (a short GradSplitter schedule)
decomposition = cnnsplit.decompose(
    model, f"{OUT}/modules", method="grad", limit=512,
    warmup_epochs=1, mask_epochs=2, batch_size=32, mask_lr=0.05, head_lr=0.005,
)
for m in decomposition.modules:
    print(f"  {m.class_name:<12} {m.kernels:>4} kernels  KRR {m.krr:.1%}")

# %% compose the modules into a classifier again and compare with the model
composed = cnnsplit.compose(decomposition, data, model=model, out=f"{OUT}/composed")
print(
    f"composed accuracy {composed['composed']['accuracy']:.2%} "
    f"vs model {composed['model_accuracy']:.2%}"
)

# %% patch a weak model's weakest class with the strong model's module for that class
weak, weak_report = cnnsplit.train(
    data, f"{OUT}/weak", arch="simcnn", width=0.0625, epochs=1, limit=600, batch_size=64, milestones=()
)
f1 = [c["f1"] for c in weak.evaluate(data)["per_class"]]
weakest = int(np.argmin(f1))
summary = cnnsplit.patch(
    weak, decomposition.modules[weakest], data, out=f"{OUT}/patched",
    calibration="percentile", percentiles=(25, 100), force=True,
)
r = summary["report"]
print(
    f"patched class {summary['target_class']!r}: F1 {r['f1']['before']:.2%} → {r['f1']['after']:.2%}, "
    f"other classes {r['non_target_accuracy']['before']:.2%} → {r['non_target_accuracy']['after']:.2%}"
)
patched = cnnsplit.open(f"{OUT}/patched")
print("patched model accuracy:", f"{patched.evaluate(data)['accuracy']:.2%}")

# %% KRR per class
try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib is not installed: no plot")
else:
    names = [m.class_name for m in decomposition.modules]
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.bar(names, [100 * m.krr for m in decomposition.modules])
    ax.set_ylabel("KRR (%)")
    ax.set_title("kernels each class module keeps")
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    path = os.path.join(OUT, "krr.png")
    fig.savefig(path)
    print("plot:", path)
