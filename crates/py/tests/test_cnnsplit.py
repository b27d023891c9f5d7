"""The cnnsplit Python package on the bundled Fashion-MNIST subset: every exposed function,
errors as exceptions, interrupt and resume. Tiny models (width 1/16, a few hundred images)
keep the suite to a minute or two on a CPU."""

import json
import os
import signal

import numpy as np
import pytest

import cnnsplit

WIDTH = 0.0625
TRAIN = dict(width=WIDTH, epochs=2, limit=300, batch_size=32, milestones=(), progress=False)
GRAD = dict(warmup_epochs=1, mask_epochs=1, batch_size=32)


@pytest.fixture(scope="session")
def data():
    return cnnsplit.load_dataset("fashion-mnist")


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="session")
def trained(data, runs):
    return cnnsplit.train(data, runs / "model", **TRAIN)


@pytest.fixture(scope="session")
def model(trained):
    return trained[0]


@pytest.fixture(scope="session")
def decomposition(model, runs):
    return cnnsplit.decompose(model, runs / "grad", method="grad", limit=200, progress=False, **GRAD)


def normalise(model, raw):
    """The model's input from raw 28×28 grey images, computed here independently: centred
    zero padding to the input size, channel repeated, (v/255 − mean)/std."""
    fmt = model.meta["input_format"]
    c, size = fmt["channels"], fmt["size"]
    n, _, h, w = raw.shape
    top, left = (size - h) // 2, (size - w) // 2
    canvas = np.zeros((n, size, size), dtype=np.float32)
    canvas[:, top : top + h, left : left + w] = raw[:, 0] / 255.0
    mean = np.asarray(fmt["norm"]["mean"], dtype=np.float32)[None, :, None, None]
    std = np.asarray(fmt["norm"]["std"], dtype=np.float32)[None, :, None, None]
    x = np.repeat(canvas[:, None], c, axis=1)
    return ((x - mean) / std).astype(np.float32)


# ------------------------------------------------------------------------------ datasets


def test_bundled_dataset_has_its_images_labels_and_classes(data):
    assert data.num_classes == 10
    assert data.class_names[0] == "T-shirt/top"
    assert data.image_shape == (1, 28, 28)
    assert (data.size("train"), data.size("test")) == (6000, 1000)
    images, labels = data.images("test"), data.labels("test")
    assert images.dtype == np.uint8 and images.shape == (1000, 1, 28, 28)
    assert np.bincount(labels, minlength=10).tolist() == [100] * 10
    assert len(data) == 7000


def test_dataset_errors_are_exceptions_with_the_cause():
    with pytest.raises(ValueError, match="unknown dataset kind"):
        cnnsplit.load_dataset("no-such-kind")
    with pytest.raises(cnnsplit.CnnsplitError, match="/no/such/dir"):
        cnnsplit.load_dataset("mnist=/no/such/dir")
    with pytest.raises(ValueError, match="uint8"):
        cnnsplit.dataset_from_arrays(np.zeros((2, 28, 28)), [0, 1], np.zeros((2, 28, 28)), [0, 1])
    with pytest.raises(cnnsplit.CnnsplitError, match="not below the number of classes"):
        cnnsplit.dataset_from_arrays(
            np.zeros((2, 28, 28), np.uint8), [0, 5], np.zeros((1, 28, 28), np.uint8), [0], ["a", "b"]
        )


def test_a_model_trains_on_numpy_arrays(data, runs):
    keep = np.isin(data.labels("train"), [1, 8])
    tr, trl = data.images("train")[keep][:200, 0], data.labels("train")[keep][:200]
    keep_t = np.isin(data.labels("test"), [1, 8])
    te, tel = data.images("test")[keep_t], data.labels("test")[keep_t]
    arrays = cnnsplit.dataset_from_arrays(tr, (trl == 8).astype(int), te, (tel == 8).astype(int), ["trouser", "bag"], name="two")
    assert arrays.spec == "arrays:two" and arrays.image_shape == (1, 28, 28)
    m, report = cnnsplit.train(arrays, runs / "arrays-model", width=WIDTH, epochs=2, batch_size=32, progress=False)
    assert report["test_images"] == 200 and m.class_names == ["trouser", "bag"]
    ev = m.evaluate(arrays)
    assert ev["samples"] == 200
    # the arrays' own normalisation is what predict applies to raw images
    expected = float(np.mean(m.predict(te).argmax(1) == (tel == 8)))
    assert ev["accuracy"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="pass the Dataset"):
        m.evaluate()


# ------------------------------------------------------------------------------ models


def test_train_reports_and_saves_the_model(trained, runs):
    model, report = trained
    assert report["test_images"] == 1000
    assert report["train_images"] + report["val_images"] == 300
    assert len(report["epochs"]) == 2
    assert os.path.isfile(os.path.join(model.path, "model.json"))
    assert model.arch == "simcnn" and model.num_classes == 10 and model.input_shape == (3, 32, 32)
    assert report["weights_sha256"] == model.weights_sha256
    a = model.analysis()
    assert a["params"] == report["params"] and a["kernels"] > 0
    with pytest.raises(ValueError, match="already holds a model"):
        cnnsplit.train("fashion-mnist", runs / "model", **TRAIN)


def test_predict_and_evaluate_agree(model, data):
    images, labels = data.images("test"), data.labels("test")
    logits = model.predict(images)
    assert logits.shape == (1000, 10) and logits.dtype == np.float32
    ev = model.evaluate(data)
    assert ev["samples"] == 1000
    assert ev["accuracy"] == pytest.approx(float(np.mean(logits.argmax(1) == labels)))
    assert len(ev["per_class"]) == 10
    # normalised float input gives the same logits as raw images
    x = normalise(model, images[:16])
    np.testing.assert_allclose(model.predict(x), logits[:16], rtol=1e-5, atol=1e-5)
    # the validation part recorded by the training run: 20 % of the 300 images
    assert model.evaluate(data, split="val")["samples"] == 60
    assert cnnsplit.evaluate(model, "fashion-mnist", split="train")["samples"] == 240


def test_prediction_errors_are_exceptions(model):
    with pytest.raises(ValueError, match=r"expects \[N, 3, 32, 32\]"):
        model.predict(np.zeros((2, 3, 28, 28), np.float32))
    with pytest.raises(ValueError, match="split must be"):
        model.evaluate("fashion-mnist", split="holdout")
    with pytest.raises(cnnsplit.CnnsplitError, match="/no/such/model"):
        cnnsplit.load_model("/no/such/model")


def test_save_load_and_open_round_trip(model, data, runs):
    saved = model.save(runs / "copy")
    again = cnnsplit.load_model(runs / "copy")
    assert again.weights_sha256 == model.weights_sha256 == saved.weights_sha256
    x = data.images("test")[:8]
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    assert isinstance(cnnsplit.open(runs / "copy"), cnnsplit.Model)


def test_import_state_dict_reads_pytorch_names(model, data, runs):
    weights = os.path.join(model.path, "model.safetensors")
    imported = cnnsplit.import_state_dict(weights, "fashion-mnist", width=WIDTH, out=runs / "imported")
    x = data.images("test")[:8]
    np.testing.assert_array_equal(imported.predict(x), model.predict(x))
    assert cnnsplit.load_model(runs / "imported").meta["training"]["imported_from"] == weights
    with pytest.raises(cnnsplit.CnnsplitError, match="model.safetensors"):
        cnnsplit.import_state_dict(weights, data, width=0.125)


def test_to_torch_state_dict(model):
    torch = pytest.importorskip("torch")
    sd = model.to_torch_state_dict()
    names = [n for n, _, _ in model._native.tensors()]
    bns = model._native.batch_norms()
    assert set(sd) == set(names) | {f"{b}.num_batches_tracked" for b in bns}
    assert all(isinstance(t, torch.Tensor) for t in sd.values())
    first = names[0]
    shape, raw = [(s, r) for n, s, r in model._native.tensors() if n == first][0]
    np.testing.assert_array_equal(sd[first].numpy(), np.frombuffer(raw, np.float32).reshape(shape))


ONNX_FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "onnx-import", "tests", "fixtures")


def read_safetensors(path):
    """The tensors of a safetensors file (f32 only), read here without the safetensors
    package: an 8-byte header length, a JSON header, then the raw data."""
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + start : 8 + n + end], np.float32).reshape(info["shape"])
    return out


def test_import_onnx_gives_pytorchs_logits(data, runs):
    path = os.path.join(ONNX_FIXTURES, "resnet18.bn.onnx")
    imported = cnnsplit.import_onnx(path, data, out=runs / "onnx")
    probe = read_safetensors(os.path.join(ONNX_FIXTURES, "resnet18.probe.safetensors"))
    np.testing.assert_allclose(imported.predict(probe["input"]), probe["logits"], atol=1e-4, rtol=0)
    saved = cnnsplit.load_model(runs / "onnx")
    assert saved.meta["training"]["onnx"]["batch_norms"] == 20
    assert saved.arch == "resnet18.bn"
    with pytest.raises(cnnsplit.CnnsplitError, match=r"no/such\.onnx"):
        cnnsplit.import_onnx("no/such.onnx", data)
    cut = runs / "cut.onnx"
    cut.write_bytes(open(path, "rb").read()[:5000])
    with pytest.raises(cnnsplit.CnnsplitError, match="not an ONNX model"):
        cnnsplit.import_onnx(cut, data)


def test_from_torch_round_trips_logits(data, runs):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1, bias=False),
        torch.nn.BatchNorm2d(6),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 8, 3, stride=2, padding=1),
        torch.nn.ReLU6(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 10),
    )
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.3, 0.3)
        net[1].running_var.uniform_(0.5, 1.5)
    x = torch.randn(4, 3, 32, 32)
    model = cnnsplit.from_torch(net, x, data, out=runs / "from_torch")
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(model.predict(x.numpy()), want, atol=1e-4, rtol=0)
    assert cnnsplit.load_model(runs / "from_torch").num_classes == 10
    # the layers keep the module's parameter names; the exporter folded the BN into conv 0
    sd = model.to_torch_state_dict()
    assert set(sd) == {f"{i}.{p}" for i in (0, 4, 8) for p in ("weight", "bias")}


# ------------------------------------------------------------------------------ decomposition


def test_grad_decomposition_returns_and_saves_one_module_per_class(decomposition, model, runs):
    d = decomposition
    assert [m.class_name for m in d.modules] == model.class_names
    assert d.record["method"] == "grad" and d.record["model_sha256"] == model.weights_sha256
    assert d.record["train_sample"] in ("first-200", "class-balanced-200")
    assert len(d.record["log"]) == 2
    assert os.path.isfile(runs / "grad" / "decomposition.json")
    for m in d.modules:
        assert 0 < m.krr <= 1 and m.kernels > 0
        assert os.path.isfile(os.path.join(m.path, "module.json"))
    loaded = cnnsplit.open(d.modules[3].path)
    assert isinstance(loaded, cnnsplit.Module) and loaded.class_name == "Dress"
    assert set(d.krr) == set(model.class_names)


def test_decompose_settings_are_checked(model, runs):
    with pytest.raises(ValueError, match="unknown setting \"no_such\".*mask_epochs"):
        cnnsplit.decompose(model, runs / "bad", no_such=1)
    with pytest.raises(ValueError, match="method must be"):
        cnnsplit.decompose(model, runs / "bad", method="magic")
    with pytest.raises(ValueError, match="already holds a decomposition"):
        cnnsplit.decompose(model, runs / "grad", progress=False, **GRAD)
    assert cnnsplit.default_config("grad")["mask_epochs"] > 0
    assert "generations" in cnnsplit.default_config("ga", model)


def test_ga_decomposition(model, runs):
    d = cnnsplit.decompose(
        model, runs / "ga", method="ga", generations=1, population=4, parents=2, keep=2,
        fitness_images=30, holdout_images=30, progress=False,
    )
    assert d.record["method"] == "ga" and len(d.modules) == 10
    assert d.record["fitness_images"] == 30 and d.record["holdout_images"] == 30
    assert len(d.record["generations"]) == 2


def test_interrupted_decomposition_resumes_to_the_same_modules(model, decomposition, runs):
    out = runs / "grad-interrupted"

    def stop_after_first_epoch(event, info):
        if event == "epoch_end":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cnnsplit.decompose(model, out, limit=200, callback=stop_after_first_epoch, progress=False, **GRAD)
    assert os.path.isdir(out / "checkpoint") and not os.path.exists(out / "decomposition.json")
    resumed = cnnsplit.decompose(model, out, limit=200, resume=True, progress=False, **GRAD)
    assert resumed.record["method"] == "grad"
    assert [m.kernels for m in resumed.modules] == [m.kernels for m in decomposition.modules]
    assert [m.meta["weights_sha256"] for m in resumed.modules] == [
        m.meta["weights_sha256"] for m in decomposition.modules
    ]


# ------------------------------------------------------------------------------ progress, interrupt


def test_callback_sees_every_epoch_and_batch(data, runs):
    events = []
    cnnsplit.train(data, runs / "events", callback=lambda e, i: events.append((e, i)), **TRAIN)
    names = [e for e, _ in events]
    assert names.count("epoch_start") == 2 and names.count("epoch_end") == 2
    batches = [i for e, i in events if e == "epoch_start"][0]["batches"]
    assert names.count("batch") == 2 * batches
    assert all(np.isfinite(i["loss"]) for e, i in events if e == "batch")


def test_an_exception_in_the_callback_stops_the_run_and_resume_ends_as_uninterrupted(data, runs, trained):
    def fail(event, info):
        if event == "epoch_start" and info["epoch"] == 2:
            raise RuntimeError("stop here")

    out = runs / "interrupted"
    with pytest.raises(RuntimeError, match="stop here"):
        cnnsplit.train(data, out, callback=fail, **TRAIN)
    assert not os.path.exists(out / "model.json")
    resumed, report = cnnsplit.train(data, out, resume=True, **TRAIN)
    assert report["weights_sha256"] == trained[1]["weights_sha256"]


def test_ctrl_c_stops_training_with_keyboard_interrupt(data, runs):
    def interrupt(event, info):
        if event == "batch" and info["batch"] == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        cnnsplit.train(data, runs / "ctrl-c", callback=interrupt, **TRAIN)


# ------------------------------------------------------------------------------ compose, patch, reuse


def test_compose_scores_the_modules_and_saves_a_composed_model(decomposition, model, data, runs):
    report = cnnsplit.compose(decomposition, data, model=model, out=runs / "composed")
    assert report["modules"] == 10 and report["composed"]["samples"] == 1000
    assert report["model_accuracy"] == pytest.approx(model.evaluate(data)["accuracy"])
    assert report["params"] > 0 and report["model_params"] == model.analysis()["params"]
    composed = cnnsplit.open(runs / "composed")
    assert isinstance(composed, cnnsplit.ComposedModel) and composed.class_names == model.class_names
    ev = composed.evaluate(data)
    assert ev["accuracy"] == pytest.approx(report["composed"]["accuracy"])
    scores = composed.predict(data.images("test")[:5])
    assert scores.shape == (5, 10)
    # a module scores like its column of the composition
    np.testing.assert_allclose(decomposition.modules[2].scores(data.images("test")[:5]), scores[:, 2], rtol=1e-5)
    with pytest.raises(cnnsplit.CnnsplitError, match="already"):
        cnnsplit.compose(decomposition, data, out=runs / "composed")


def test_compose_refuses_modules_of_another_model(decomposition, data, runs):
    other, _ = cnnsplit.train(data, runs / "other", **dict(TRAIN, seed=1, epochs=1))
    with pytest.raises(ValueError, match="not from the given model"):
        cnnsplit.compose(decomposition, data, model=other)


def test_patch_measures_and_saves_the_patched_model(model, decomposition, data, runs):
    module = decomposition.modules[1]
    summary = cnnsplit.patch(model, module, data, out=runs / "patched", force=True)
    assert summary["target_class"] == "Trouser"
    r = summary["report"]
    assert r["images"] == 1000 and r["target_images"] == 100
    assert summary["forced"] == bool(module.collapsed)
    patched = cnnsplit.open(runs / "patched")
    assert isinstance(patched, cnnsplit.PatchedModel)
    ev = patched.evaluate(data)
    scores = patched.predict(data.images("test"))
    assert ev["accuracy"] == pytest.approx(float(np.mean(scores.argmax(1) == data.labels("test"))))
    with pytest.raises(ValueError, match="calibration must be"):
        cnnsplit.patch(model, module, data, calibration="magic")


def test_reuse_select_and_new_task(model, decomposition, data, runs):
    other, _ = cnnsplit.train(data, runs / "other-select", **dict(TRAIN, seed=2))
    cnnsplit.decompose(other, runs / "grad-other", limit=200, progress=False, **GRAD)
    report = cnnsplit.reuse_select([model, other], [runs / "grad", runs / "grad-other"], data, out=runs / "selected")
    assert len(report["chosen_model"]) == 10
    assert isinstance(cnnsplit.open(runs / "selected"), cnnsplit.ComposedModel)
    mods = decomposition.modules
    report = cnnsplit.reuse_new_task({"Trouser": mods[1], "Bag": mods[8]}, ["fashion-mnist"], out=runs / "new-task")
    assert report["class_names"] == ["Trouser", "Bag"]
    assert 0.0 <= report["composed_accuracy"] <= 1.0
    with pytest.raises(cnnsplit.CnnsplitError):
        cnnsplit.reuse_new_task({"NoSuchClass": mods[1]}, ["fashion-mnist"])


def test_help_describes_the_functions():
    assert "GradSplitter" in cnnsplit.decompose.__doc__ and "resume=True" in cnnsplit.decompose.__doc__
    assert "KeyboardInterrupt" in cnnsplit.__doc__
    assert json.loads(json.dumps(cnnsplit.default_config("grad")))
