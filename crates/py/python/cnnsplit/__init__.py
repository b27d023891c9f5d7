"""cnnsplit from Python: train CNN classifiers, decompose them into class modules
(GradSplitter or CNNSplitter), then compose, patch and reuse the modules.

The work is done by the cnnsplit Rust libraries (the native extension ``cnnsplit._native``);
this package turns NumPy arrays into their inputs, their JSON reports into dicts, and their
progress into tqdm bars (when tqdm is installed) and an optional callback.

Quick start::

    import cnnsplit
    data = cnnsplit.load_dataset("fashion-mnist")           # the bundled subset
    model, report = cnnsplit.train(data, "runs/model", arch="simcnn", width=0.25, epochs=2)
    result = cnnsplit.decompose(model, "runs/modules", method="grad", mask_epochs=2)
    print(cnnsplit.compose(result.modules, data)["composed"]["accuracy"])

Long calls (``train``, ``decompose``, ``reuse_new_task``) release the GIL, report progress
through ``callback(event, info)`` and stop cleanly on KeyboardInterrupt (Ctrl-C, or an
exception raised by the callback): the checkpoints under ``out/checkpoint`` stay intact and
the same call with ``resume=True`` continues from the last one. Errors of the libraries are
raised as :class:`CnnsplitError` with the Rust error's message; wrong arguments as
``ValueError``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native
from ._native import CnnsplitError

__version__ = _native.__version__

__all__ = [
    "CnnsplitError",
    "Dataset",
    "Model",
    "Module",
    "ComposedModel",
    "PatchedModel",
    "Decomposition",
    "load_dataset",
    "dataset_from_arrays",
    "load_model",
    "load_module",
    "open",
    "train",
    "import_state_dict",
    "import_onnx",
    "from_torch",
    "evaluate",
    "predict",
    "decompose",
    "default_config",
    "compose",
    "patch",
    "reuse_select",
    "reuse_new_task",
]

PathLike = Union[str, "os.PathLike[str]"]
Callback = Callable[[str, Dict[str, Any]], Any]


# ---------------------------------------------------------------------------------------------
# datasets


class Dataset:
    """A dataset's train and test splits (raw uint8 images, labels, class names).

    Load one by the CLI's names with :func:`load_dataset`, or build one from arrays with
    :func:`dataset_from_arrays`.
    """

    def __init__(self, native: "_native.Dataset"):
        self._native = native

    @property
    def spec(self) -> str:
        """The dataset as models record it (``fashion-mnist=/path`` or ``arrays:NAME``)."""
        return self._native.spec

    @property
    def class_names(self) -> List[str]:
        """Class names in label order."""
        return list(self._native.class_names)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self._native.class_names)

    @property
    def image_shape(self) -> Tuple[int, int, int]:
        """Stored image shape ``(channels, height, width)``."""
        return tuple(self._native.image_shape)

    def __len__(self) -> int:
        return self._native.len_of("train") + self._native.len_of("test")

    def size(self, split: str = "train") -> int:
        """Number of images of ``split`` (``"train"`` or ``"test"``)."""
        return self._native.len_of(split)

    def images(self, split: str = "test") -> np.ndarray:
        """The raw images of ``split`` as a uint8 array ``[N, C, H, W]``."""
        c, h, w = self.image_shape
        raw = self._native.image_bytes(split)
        return np.frombuffer(raw, dtype=np.uint8).reshape(-1, c, h, w)

    def labels(self, split: str = "test") -> np.ndarray:
        """The labels of ``split`` as an int64 array."""
        return np.asarray(self._native.labels(split), dtype=np.int64)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.spec!r}, {self.num_classes} classes, "
            f"{self.size('train')} train / {self.size('test')} test images)"
        )


def load_dataset(name: str) -> Dataset:
    """Load a dataset by the name the CLI's ``--dataset`` takes.

    ``fashion-mnist`` is the subset bundled with the source tree; ``fashion-mnist-full``,
    ``mnist``, ``cifar10`` … are read from ``datasets/<name>`` (or ``$CNNSPLIT_DATA_DIR``);
    ``NAME=DIR`` reads from ``DIR``; ``folder=DIR`` reads ``DIR/train/<class>/*.png|jpg`` and
    ``DIR/test/<class>/…``. Raises :class:`CnnsplitError` when the files are missing or
    malformed.
    """
    return Dataset(_native.Dataset.load(name))


def _uint8_images(images: Any, what: str) -> np.ndarray:
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise ValueError(f"{what}: raw images must be uint8 (0..255), got {arr.dtype}")
    if arr.ndim not in (3, 4):
        raise ValueError(f"{what}: images must be [N, C, H, W] or [N, H, W], got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def dataset_from_arrays(
    train_images: Any,
    train_labels: Any,
    test_images: Any,
    test_labels: Any,
    class_names: Optional[Sequence[str]] = None,
    name: str = "arrays",
) -> Dataset:
    """A dataset of raw uint8 images (``[N, C, H, W]``, or ``[N, H, W]`` for grey) and
    integer labels.

    Models trained on it take 3×32×32 inputs (grey images are repeated over three channels,
    smaller images zero-padded), normalised with the training images' per-channel mean and
    deviation. ``class_names`` defaults to ``"0"``, ``"1"``, …
    """
    tr = _uint8_images(train_images, "train_images")
    te = _uint8_images(test_images, "test_images")
    trl = np.asarray(train_labels).astype(np.int64).ravel()
    tel = np.asarray(test_labels).astype(np.int64).ravel()
    for labels, what in ((trl, "train_labels"), (tel, "test_labels")):
        if labels.size and (labels.min() < 0 or labels.max() > 65535):
            raise ValueError(f"{what}: labels must be within 0..65535")
    if class_names is None:
        top = int(max(trl.max(initial=-1), tel.max(initial=-1))) + 1
        class_names = [str(c) for c in range(top)]
    native = _native.Dataset.from_buffers(
        name,
        tr.tobytes(),
        list(tr.shape),
        trl.tolist(),
        te.tobytes(),
        list(te.shape),
        tel.tolist(),
        list(class_names),
    )
    return Dataset(native)


def _dataset(data: Union[Dataset, str, None], default: Optional[str] = None) -> Dataset:
    if data is None:
        if default is None:
            raise ValueError("no dataset given")
        if default.startswith("arrays:"):
            raise ValueError(
                f"the model was trained on arrays ({default}); pass the Dataset explicitly"
            )
        return load_dataset(default)
    if isinstance(data, Dataset):
        return data
    if isinstance(data, str):
        return load_dataset(data)
    raise TypeError(f"expected a Dataset or a dataset name, got {type(data).__name__}")


# ---------------------------------------------------------------------------------------------
# progress


class _Progress:
    """Turns the libraries' progress events into a tqdm bar (when tqdm is installed and
    ``show`` is true) and calls the user's callback."""

    def __init__(self, callback: Optional[Callback], show: bool):
        self.callback = callback
        self.bar = None
        self.tqdm = None
        if show:
            try:
                from tqdm.auto import tqdm

                self.tqdm = tqdm
            except ImportError:
                self.tqdm = None

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __call__(self, event: str, info_json: str) -> None:
        info = json.loads(info_json)
        if self.tqdm is not None:
            if event == "epoch_start":
                self._close()
                desc = f"{info.get('phase', 'train')} {info['epoch']}/{info['epochs']}"
                self.bar = self.tqdm(total=info["batches"], desc=desc, leave=False)
            elif event == "batch" and self.bar is not None:
                self.bar.set_postfix(loss=f"{info['loss']:.4f}", refresh=False)
                self.bar.update(1)
            elif event == "epoch_end":
                self._close()
            elif event == "generation_start" and self.bar is None:
                self.bar = self.tqdm(total=info["last"] + 1, initial=info["generation"], desc="generations")
            elif event == "generation" and self.bar is not None:
                self.bar.set_postfix(acc=f"{info['best_accuracy']:.4f}", refresh=False)
                self.bar.update(1)
        if self.callback is not None:
            self.callback(event, info)

    def native(self) -> Callable[[str, str], None]:
        return self

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._close()


# ---------------------------------------------------------------------------------------------
# models


def _f32(raw: bytes, columns: int) -> np.ndarray:
    return np.frombuffer(raw, dtype=np.float32).reshape(-1, columns).copy()


class Model:
    """A trained CNN classifier (weights, architecture and its ``model.json``)."""

    def __init__(self, native: "_native.Model"):
        self._native = native
        self._meta = json.loads(native.meta_json())

    @staticmethod
    def load(path: PathLike) -> "Model":
        """Load the model saved in directory ``path``."""
        return Model(_native.Model.load(os.fspath(path)))

    def save(self, path: PathLike) -> "Model":
        """Save the model into directory ``path``; returns the model as saved there."""
        return Model(self._native.save(os.fspath(path)))

    @property
    def path(self) -> Optional[str]:
        """The directory the model was loaded from or saved to."""
        return self._native.path

    @property
    def meta(self) -> Dict[str, Any]:
        """``model.json``: spec, input format, dataset, class names, training record."""
        return self._meta

    @property
    def arch(self) -> str:
        """Architecture name (e.g. ``simcnn``)."""
        return self._meta["spec"]["name"]

    @property
    def class_names(self) -> List[str]:
        """Class names in label order."""
        return list(self._meta["class_names"])

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self._meta["class_names"])

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        """The normalised input a model takes, ``(channels, height, width)``."""
        i = self._meta["spec"]["input"]
        return (i["channels"], i["height"], i["width"])

    @property
    def dataset(self) -> str:
        """The dataset the model was trained on, as recorded."""
        return self._meta["dataset"]

    @property
    def weights_sha256(self) -> str:
        """SHA-256 of the saved weights."""
        return self._meta["weights_sha256"]

    def analysis(self) -> Dict[str, int]:
        """Parameters, kernels (conv output channels) and MACs per image."""
        return json.loads(self._native.analysis_json())

    def predict(self, images: Any, batch_size: int = 256) -> np.ndarray:
        """Logits ``[N, classes]`` (float32) of a batch of images.

        ``images`` is either raw uint8 ``[N, C, H, W]`` / ``[N, H, W]`` (converted with the
        model's input format: padding, channels, normalisation) or float32 ``[N, C, H, W]``
        already normalised to the model's input shape.
        """
        return predict(self, images, batch_size=batch_size)

    def evaluate(
        self, data: Union[Dataset, str, None] = None, split: str = "test", batch_size: int = 256
    ) -> Dict[str, Any]:
        """Accuracy, per-class metrics and confusion matrix on ``split`` of ``data``."""
        return evaluate(self, data, split=split, batch_size=batch_size)

    def to_torch_state_dict(self) -> "Dict[str, Any]":
        """The weights as a PyTorch ``state_dict`` (``torch.Tensor`` under the PyTorch
        parameter names, with ``num_batches_tracked`` for every BatchNorm), ready for
        ``module.load_state_dict``. Raises ImportError when PyTorch is not installed."""
        try:
            import torch
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(
                "Model.to_torch_state_dict needs PyTorch: pip install torch"
            ) from e
        out: Dict[str, Any] = {}
        for name, shape, raw in self._native.tensors():
            arr = np.frombuffer(raw, dtype=np.float32).reshape(shape).copy()
            out[name] = torch.from_numpy(arr)
        for bn in self._native.batch_norms():
            out[f"{bn}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
        return out

    def __repr__(self) -> str:
        return f"Model({self.arch!r}, {self.num_classes} classes, path={self.path!r})"


def load_model(path: PathLike) -> Model:
    """Load the model saved in directory ``path`` (``model.json`` + ``model.safetensors``)."""
    return Model.load(path)


def train(
    data: Union[Dataset, str],
    out: PathLike,
    arch: str = "simcnn",
    width: float = 1.0,
    epochs: int = 200,
    batch_size: int = 128,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    milestones: Sequence[int] = (60, 120),
    lr_gamma: float = 0.1,
    augment: Union[str, None, Dict[str, Any]] = "auto",
    seed: int = 0,
    val_fraction: float = 0.2,
    limit: Optional[int] = None,
    estimator: Optional[int] = None,
    dirichlet_alpha: float = 1.0,
    min_size: int = 100,
    patience: int = 0,
    min_epochs: int = 0,
    eval_batch: int = 256,
    resume: bool = False,
    callback: Optional[Callback] = None,
    progress: bool = True,
) -> Tuple[Model, Dict[str, Any]]:
    """Train a model as ``cnnsplit train`` does; returns ``(model, report)``.

    ``arch`` is a preset (``simcnn``, ``rescnn``, ``incecnn`` and their ``-nobn`` variants)
    scaled by ``width``, or a ModelSpec JSON file. The training split of ``data`` is divided
    into training and validation parts (``val_fraction`` holdout, optionally only the first
    ``limit`` images; or with ``estimator=SEED`` the Dirichlet estimator subset); the epoch of
    best validation accuracy is kept, evaluated on the test split and saved to ``out``.
    ``augment``: ``"auto"`` (the dataset's default), ``None``, or
    ``{"hflip": bool, "crop_padding": int}``. ``patience`` > 0 stops early.

    Progress goes to a tqdm bar (``progress=True`` and tqdm installed) and to
    ``callback(event, info)`` (events ``epoch_start``, ``batch``, ``epoch_end``). Ctrl-C or
    an exception from the callback stops training after the current batch; the per-epoch
    checkpoint in ``out/checkpoint`` is kept and ``resume=True`` continues from it, ending
    where an uninterrupted run would.
    """
    ds = _dataset(data)
    config = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "momentum": momentum,
        "weight_decay": weight_decay,
        "lr_milestones": list(milestones),
        "lr_gamma": lr_gamma,
        "augment": augment,
        "seed": seed,
        "eval_batch": eval_batch,
        "patience": patience,
        "min_epochs": min_epochs,
    }
    if estimator is not None:
        split = {"kind": "estimator", "seed": estimator, "alpha": dirichlet_alpha, "min_size": min_size}
    else:
        split = {"kind": "holdout", "val_fraction": val_fraction, "limit": limit}
    with _Progress(callback, progress) as hook:
        native, report = _native.train(
            ds._native,
            os.fspath(out),
            arch,
            float(width),
            json.dumps(config),
            json.dumps(split),
            resume,
            hook.native(),
        )
    return Model(native), json.loads(report)


def import_state_dict(
    path: PathLike,
    data: Union[Dataset, str],
    arch: str = "simcnn",
    width: float = 1.0,
    out: Optional[PathLike] = None,
) -> Model:
    """Wrap a PyTorch ``state_dict`` saved as safetensors (``safetensors.torch.save_file``)
    into a model of preset ``arch`` at ``width`` (or a ModelSpec JSON file) for ``data``'s
    input and classes, checked tensor by tensor; saved to ``out`` when given (as
    ``cnnsplit import`` does)."""
    ds = _dataset(data)
    native = _native.import_state_dict(
        os.fspath(path), ds._native, arch, float(width), None if out is None else os.fspath(out)
    )
    return Model(native)


def import_onnx(
    path: PathLike,
    data: Union[Dataset, str],
    out: Optional[PathLike] = None,
    val_last: Optional[int] = None,
) -> Model:
    """Read an ONNX model (as ``torch.onnx.export`` writes it, BatchNorm folded or kept, opset
    11-23) into a cnnsplit model for ``data``'s input and classes; the architecture and weights
    come from the file and the layer names from its initialisers. Saved to ``out`` when given
    (as ``cnnsplit import --onnx`` does). ``val_last=N`` records that the model was trained on
    all training images but the last N, so decompositions validate on those. An unsupported
    operator raises CnnsplitError naming the node."""
    ds = _dataset(data)
    native = _native.import_onnx(
        os.fspath(path), ds._native, None if out is None else os.fspath(out), val_last
    )
    return Model(native)


def from_torch(
    module: Any,
    example_input: Any,
    data: Union[Dataset, str],
    out: Optional[PathLike] = None,
    onnx_path: Optional[PathLike] = None,
) -> Model:
    """A ``torch.nn.Module`` as a cnnsplit model: exported in eval mode with
    ``torch.onnx.export`` (the default exporter when ``onnxscript`` is installed, else the
    TorchScript one) and read with :func:`import_onnx`. ``example_input`` is a batch
    ``[N, C, H, W]`` of the model's (normalised) input; ``data`` gives the classes and input
    format. The ONNX file goes to ``onnx_path`` when given (else a temporary file); the model is
    saved to ``out`` when given. The module is left in eval mode. Raises ImportError when
    PyTorch is not installed.

    ::

        model = cnnsplit.from_torch(net, torch.randn(1, 3, 32, 32), "fashion-mnist")
    """
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("cnnsplit.from_torch needs PyTorch: pip install torch onnx") from e
    import tempfile

    module.eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.fspath(onnx_path) if onnx_path is not None else os.path.join(tmp, "model.onnx")
        try:
            import onnxscript  # noqa: F401  (the default exporter needs it)

            torch.onnx.export(module, (example_input,), path, dynamo=True, external_data=False,
                              verbose=False)
        except ImportError:
            torch.onnx.export(module, (example_input,), path, dynamo=False, verbose=False)
        return import_onnx(path, data, out)


def _predict_bytes(images: Any) -> Tuple[str, np.ndarray]:
    arr = np.asarray(images)
    if arr.dtype == np.uint8:
        return "raw", _uint8_images(arr, "images")
    if arr.ndim != 4:
        raise ValueError(f"normalised images must be [N, C, H, W] float32, got shape {arr.shape}")
    return "normalised", np.ascontiguousarray(arr, dtype=np.float32)


def predict(target: Any, images: Any, batch_size: int = 256) -> np.ndarray:
    """Scores ``[N, classes]`` (float32) of ``target`` on a batch of images.

    ``target`` is a :class:`Model` (logits), :class:`ComposedModel` (module scores),
    :class:`PatchedModel` (patched softmax) or :class:`Module` (its class score, ``[N, 1]``).
    ``images`` are raw uint8 ``[N, C, H, W]`` / ``[N, H, W]`` (converted with the target's
    input format) or, for a Model or Module, float32 ``[N, C, H, W]`` already normalised.
    """
    kind, arr = _predict_bytes(images)
    shape = list(arr.shape)
    raw = arr.tobytes()
    if isinstance(target, Model):
        n = target.num_classes
        if kind == "raw":
            return _f32(target._native.predict_raw(raw, shape, batch_size), n)
        return _f32(target._native.predict_normalised(raw, shape, batch_size), n)
    if isinstance(target, Module):
        if kind == "raw":
            return _f32(target._native.scores_raw(raw, shape, batch_size), 1)
        return _f32(_native.module_scores_normalised(target._native, raw, shape, batch_size), 1)
    if isinstance(target, (ComposedModel, PatchedModel)):
        if kind != "raw":
            raise ValueError(f"{type(target).__name__}.predict takes raw uint8 images")
        return _f32(target._native.scores_raw(raw, shape, batch_size), len(target.class_names))
    raise TypeError(f"cannot predict with {type(target).__name__}")


def evaluate(
    target: Any,
    data: Union[Dataset, str, None] = None,
    split: str = "test",
    batch_size: int = 256,
) -> Dict[str, Any]:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix of ``target`` (a
    Model, PatchedModel or ComposedModel) on ``split`` of ``data`` (default: the dataset the
    target was made on). ``split`` is ``"test"``, or ``"val"`` / ``"train"`` — the parts of
    the training split a model's run recorded (models and patched models only)."""
    if isinstance(target, Model):
        ds = _dataset(data, target.dataset)
        return json.loads(target._native.evaluate(ds._native, split, batch_size))
    if isinstance(target, PatchedModel):
        ds = _dataset(data, target.meta_dataset)
        return json.loads(target._native.evaluate(ds._native, split, batch_size))
    if isinstance(target, ComposedModel):
        if split != "test":
            raise ValueError("a composed model is evaluated on the test split")
        datasets = target.manifest["datasets"]
        ds = _dataset(data, datasets[0] if len(datasets) == 1 else None)
        return json.loads(target._native.evaluate(ds._native, batch_size))
    raise TypeError(f"cannot evaluate {type(target).__name__}")


# ---------------------------------------------------------------------------------------------
# modules and decomposition


class Module:
    """A class module: the part of a model that recognises one class (a binary scorer)."""

    def __init__(self, native: "_native.Module"):
        self._native = native
        self._meta = json.loads(native.meta_json())

    @staticmethod
    def load(path: PathLike) -> "Module":
        """Load the module saved in directory ``path``."""
        return Module(_native.Module.load(os.fspath(path)))

    @property
    def path(self) -> Optional[str]:
        """Its directory."""
        return self._native.path

    @property
    def meta(self) -> Dict[str, Any]:
        """``module.json``: class, kernels kept, KRR, parent, calibration, collapse flags."""
        return self._meta

    @property
    def class_name(self) -> str:
        """The class it recognises."""
        return self._meta["class_name"]

    @property
    def kernels(self) -> int:
        """Kernels (conv output channels) it keeps."""
        return int(self._meta["kernels"])

    @property
    def krr(self) -> float:
        """Kernel retention rate: kept kernels / the model's kernels."""
        return float(self._meta["krr"])

    @property
    def collapsed(self) -> List[Any]:
        """Why the module is flagged collapsed (design §13); empty when it is not."""
        return list(self._meta.get("collapsed", []))

    def scores(self, images: Any, batch_size: int = 256) -> np.ndarray:
        """The module's calibrated class scores ``[N]`` of a batch of images."""
        return predict(self, images, batch_size)[:, 0]

    def __repr__(self) -> str:
        return f"Module({self.class_name!r}, kernels={self.kernels}, krr={self.krr:.3f}, path={self.path!r})"


def load_module(path: PathLike) -> Module:
    """Load the class module saved in directory ``path``."""
    return Module.load(path)


@dataclass
class Decomposition:
    """What :func:`decompose` returns: one module per class (in class order) and the run's
    record (``decomposition.json``: method, settings, per-epoch or per-generation log,
    chosen epoch/generation, per-module kernels, KRR, collapse flags)."""

    modules: List[Module]
    record: Dict[str, Any]
    out: str = ""

    @property
    def krr(self) -> Dict[str, float]:
        """KRR per class name."""
        return {m.class_name: m.krr for m in self.modules}


def decompose(
    model: Model,
    out: PathLike,
    method: str = "grad",
    data: Union[Dataset, str, None] = None,
    limit: Optional[int] = None,
    resume: bool = False,
    callback: Optional[Callback] = None,
    progress: bool = True,
    **config: Any,
) -> Decomposition:
    """Decompose ``model`` into one module per class, as ``cnnsplit decompose`` does.

    ``method="grad"`` runs GradSplitter (gradient search over kernel masks, design §5);
    ``method="ga"`` runs CNNSplitter (genetic algorithm, design §6). The search uses the
    training and validation parts ``model.json`` records on ``data`` (default: the model's own
    dataset), the training part cut to ``limit`` images when given. Modules are saved as
    ``out/module_<c>/`` with the record ``out/decomposition.json``; the search checkpoints in
    ``out/checkpoint``.

    ``**config`` changes settings by name; :func:`default_config` lists them. GradSplitter:
    ``warmup_epochs``, ``mask_epochs``, ``lambda``, ``mask_lr``, ``head_lr``, ``batch_size``,
    ``tolerance``, ``seed``, ``krr_patience``, … CNNSplitter: the GA's ``generations``,
    ``population``, ``parents``, ``keep``, ``mutation_percent``, ``alpha``, ``gamma``,
    ``sensitive_ratios``, ``other_ratios``, ``early_stop``, … and the run's ``ga_preset``,
    ``confidence``, ``sensitive_layers``, ``seed``, ``batch_size``, ``fitness_images``,
    ``holdout_images``, ``init_ratios`` (``"probe"`` or ``"config"``). An unknown name is a
    ``ValueError`` that lists the known ones.

    Progress: a tqdm bar when installed (``progress=True``) and ``callback(event, info)``
    (GradSplitter: ``started``, ``epoch_start``, ``batch``, ``epoch_end``, ``chosen``;
    CNNSplitter: ``importance``, ``sensitivity``, ``ratio_probe``, ``generation_start``,
    ``generation``). Ctrl-C, or an exception raised by the callback, stops the search at the
    next event with its checkpoint intact; call again with ``resume=True`` to continue.

    Returns a :class:`Decomposition` (``.modules``, ``.record``, ``.krr``).
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a cnnsplit.Model, got {type(model).__name__}")
    ds = _dataset(data, model.dataset)
    with _Progress(callback, progress) as hook:
        record, modules = _native.decompose(
            model._native,
            ds._native,
            os.fspath(out),
            method,
            json.dumps(config),
            resume,
            limit,
            hook.native(),
        )
    return Decomposition([Module(m) for m in modules], json.loads(record), os.fspath(out))


def default_config(method: str = "grad", model: Optional[Model] = None) -> Dict[str, Any]:
    """The settings :func:`decompose` uses for ``method`` unless changed (for CNNSplitter,
    the GA numbers chosen for ``model``'s architecture when given)."""
    return json.loads(_native.default_config(method, None if model is None else model._native))


# ---------------------------------------------------------------------------------------------
# composition, patching, reuse


class ComposedModel:
    """A saved composition: one module per class, scored side by side (highest score wins)."""

    def __init__(self, native: "_native.ComposedModel"):
        self._native = native
        self.manifest: Dict[str, Any] = json.loads(native.manifest_json())

    @property
    def path(self) -> str:
        """Its directory."""
        return self._native.path

    @property
    def class_names(self) -> List[str]:
        """Class names in label order."""
        return list(self._native.class_names)

    def predict(self, images: Any, batch_size: int = 256) -> np.ndarray:
        """Module scores ``[N, classes]`` of raw uint8 images."""
        return predict(self, images, batch_size)

    def evaluate(self, data: Union[Dataset, str, None] = None, batch_size: int = 256) -> Dict[str, Any]:
        """Accuracy and per-class metrics on the test images of its classes in ``data``."""
        return evaluate(self, data, batch_size=batch_size)

    def __repr__(self) -> str:
        return f"ComposedModel({len(self.class_names)} classes, path={self.path!r})"


class PatchedModel:
    """A saved patched model: a weak model whose target class score is replaced by a
    module's calibrated score (design §7)."""

    def __init__(self, native: "_native.PatchedModel"):
        self._native = native
        self.manifest: Dict[str, Any] = json.loads(native.manifest_json())

    @property
    def path(self) -> str:
        """Its directory."""
        return self._native.path

    @property
    def class_names(self) -> List[str]:
        """Class names in label order."""
        return list(self._native.class_names)

    @property
    def meta_dataset(self) -> str:
        """The dataset the weak model was trained on, as recorded."""
        return self._native.dataset

    def predict(self, images: Any, batch_size: int = 256) -> np.ndarray:
        """Patched scores ``[N, classes]`` of raw uint8 images."""
        return predict(self, images, batch_size)

    def evaluate(
        self, data: Union[Dataset, str, None] = None, split: str = "test", batch_size: int = 256
    ) -> Dict[str, Any]:
        """Accuracy and per-class metrics of the patched predictions on ``split`` of ``data``."""
        return evaluate(self, data, split=split, batch_size=batch_size)

    def __repr__(self) -> str:
        return f"PatchedModel(target {self.manifest.get('target_class')!r}, path={self.path!r})"


def open(path: PathLike) -> Union[Model, Module, ComposedModel, PatchedModel]:  # noqa: A001
    """Open whatever artefact directory ``path`` holds: a model, a class module, a patched
    model or a composed model."""
    native = _native.open(os.fspath(path))
    for cls in (Model, Module, ComposedModel, PatchedModel):
        if type(native).__name__ == cls.__name__:
            return cls(native)
    raise CnnsplitError(f"{path}: unknown artefact")  # pragma: no cover


def compose(
    modules: Union[Decomposition, Sequence[Module]],
    data: Union[Dataset, str, None] = None,
    model: Optional[Model] = None,
    out: Optional[PathLike] = None,
    batch_size: int = 256,
) -> Dict[str, Any]:
    """Compose class modules into one classifier (each image goes to the class whose module
    scores highest) and score it on the test split of ``data``, as ``cnnsplit compose``.

    With ``model`` (the modules' parent) the report also gives the model's accuracy on the
    same images and the modules' cost relative to it; with ``out`` the composed model is saved
    there (open it with :func:`open`). Returns the report: ``composed`` (accuracy, per-class
    metrics, confusion), ``model_accuracy``, ``params``, ``macs``, ``collapsed_modules``.
    """
    mods = modules.modules if isinstance(modules, Decomposition) else list(modules)
    if not mods:
        raise ValueError("no modules given")
    default = model.dataset if model is not None else mods[0].meta.get("dataset")
    ds = _dataset(data, default)
    report = _native.compose(
        [m._native for m in mods],
        ds._native,
        batch_size,
        None if model is None else model._native,
        None if out is None else os.fspath(out),
    )
    return json.loads(report)


def patch(
    model: Model,
    module: Module,
    data: Union[Dataset, str, None] = None,
    out: Optional[PathLike] = None,
    target: Optional[str] = None,
    calibration: str = "minmax",
    percentiles: Tuple[float, float] = (1.0, 99.0),
    clip: bool = False,
    force: bool = False,
    batch_size: int = 256,
) -> Dict[str, Any]:
    """Patch a weak ``model`` with a ``module`` (design §7), as ``cnnsplit patch``: the
    module's calibrated score replaces the model's softmax for the module's class (or
    ``target``). Measures target precision/recall/F1 and other-class accuracy before and
    after on the test split of ``data`` (default: the model's dataset); saves the patched
    model to ``out`` when given. ``calibration``: ``"minmax"``, ``"percentile"`` (with
    ``percentiles``) or ``"none"``. A collapsed module is refused unless ``force``."""
    ds = _dataset(data, model.dataset)
    summary = _native.patch(
        model._native,
        module._native,
        ds._native,
        None if out is None else os.fspath(out),
        target,
        calibration,
        tuple(percentiles),
        clip,
        force,
        batch_size,
    )
    return json.loads(summary)


def reuse_select(
    models: Sequence[Model],
    module_dirs: Sequence[PathLike],
    data: Union[Dataset, str, None] = None,
    out: Optional[PathLike] = None,
    selection_fraction: float = 0.2,
    batch_size: int = 256,
) -> Dict[str, Any]:
    """Reuse, same task (design §8), as ``cnnsplit reuse select``: several models of one task
    and one folder of their modules each; per class the module of best F1 on the first
    ``selection_fraction`` of each class's test images is chosen, and the composition is
    compared with the models and their ensemble on the rest. ``data`` must be loaded by name.
    Saves the composed model to ``out`` when given; returns the report."""
    if not models:
        raise ValueError("no models given")
    ds = _dataset(data, models[0].dataset)
    report = _native.reuse_select(
        [m._native for m in models],
        [os.fspath(d) for d in module_dirs],
        ds._native,
        None if out is None else os.fspath(out),
        selection_fraction,
        batch_size,
    )
    return json.loads(report)


def reuse_new_task(
    modules: Union[Dict[str, Union[Module, Sequence[Module]]], Sequence[Tuple[str, Module]]],
    datasets: Sequence[Union[Dataset, str]],
    out: Optional[PathLike] = None,
    selection_fraction: float = 0.2,
    batch_size: int = 256,
    scratch_epochs: int = 0,
    scratch_patience: int = 5,
    scratch_min_epochs: int = 1,
    scratch_batch_size: int = 64,
    scratch_lr: float = 0.01,
    seed: int = 0,
    callback: Optional[Callback] = None,
    progress: bool = True,
) -> Dict[str, Any]:
    """Reuse, new task (design §8), as ``cnnsplit reuse new-task``: a classifier for classes
    taken from different datasets, composed from offered modules without training.

    ``modules`` maps each task class name to a module (or several candidates; the one of best
    F1 on the selection part wins), or is a list of ``(class name, module)`` pairs.
    ``datasets`` (loaded by name) hold the classes' images. With ``scratch_epochs`` > 0 a
    model is also trained from scratch on the task as the baseline (progress as in
    :func:`train`). Saves the composed model to ``out`` when given; returns the report.
    """
    pairs: List[Tuple[str, Module]] = []
    if isinstance(modules, dict):
        for cls, mods in modules.items():
            for m in mods if isinstance(mods, (list, tuple)) else [mods]:
                pairs.append((cls, m))
    else:
        pairs = [(c, m) for c, m in modules]
    scratch = {
        "epochs": scratch_epochs,
        "patience": scratch_patience,
        "min_epochs": scratch_min_epochs,
        "batch_size": scratch_batch_size,
        "lr": scratch_lr,
        "seed": seed,
    }
    with _Progress(callback, progress) as hook:
        report = _native.reuse_new_task(
            [(c, m._native) for c, m in pairs],
            [_dataset(d)._native for d in datasets],
            None if out is None else os.fspath(out),
            selection_fraction,
            batch_size,
            json.dumps(scratch),
            hook.native(),
        )
    return json.loads(report)
