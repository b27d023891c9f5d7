//! One function per subcommand: wiring between arguments, library crates and output.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use cnn_data::{Augment, DatasetKind, DatasetSpec, DatasetSplits, ImageSet, InputFormat};
use cnn_models::files::{atomic_write, ModelMeta};
use cnn_models::metrics::{argmax_rows, Evaluation};
use cnn_models::train::DataSplit;
use cnn_models::training_run::{train_and_save, TrainRun};
use cnn_models::{presets, ModelSpec, TrainConfig};
use composer::{Artifact, ArtifactKind};
use serde_json::json;

use crate::args::*;
use crate::progress::TrainProgress;

/// Run the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let g = cli.global;
    match cli.command {
        Command::Train(a) => train(&g, a),
        Command::Eval(a) => eval(&g, a),
        Command::Predict(a) => predict(&g, a),
        Command::Import(a) => import(&g, a),
        Command::Inspect(a) => inspect(&g, a),
        Command::Decompose(a) => crate::modules::decompose(&g, *a),
        Command::Compose(a) => crate::modules::compose(&g, a),
        Command::Reuse(a) => match a.command {
            ReuseCommand::Select(s) => crate::reuse::select(&g, &s).map(|_| ()),
            ReuseCommand::NewTask(n) => crate::reuse::new_task(&g, &n).map(|_| ()),
        },
        Command::Demo(a) => demo(&g, a),
        Command::Patch(a) => crate::patch::patch(&g, a),
    }
}

/// The device a `--device` choice selects.
pub fn device(choice: DeviceChoice) -> Result<Device> {
    Ok(match choice {
        DeviceChoice::Cpu => Device::Cpu,
        DeviceChoice::Cuda => {
            if !candle_core::utils::cuda_is_available() {
                bail!("--device cuda: this binary was built without CUDA support (build with --features cuda)");
            }
            Device::new_cuda(0).context("--device cuda: no usable CUDA GPU")?
        }
        DeviceChoice::Auto => {
            if candle_core::utils::cuda_is_available() {
                Device::new_cuda(0).unwrap_or(Device::Cpu)
            } else {
                Device::Cpu
            }
        }
    })
}

pub fn load_data(dataset: &str) -> Result<(DatasetSpec, DatasetSplits)> {
    let spec: DatasetSpec = dataset
        .parse()
        .with_context(|| format!("--dataset {dataset}"))?;
    let started = Instant::now();
    let splits =
        cnn_data::load_dataset(&spec).with_context(|| format!("loading dataset {spec}"))?;
    tracing::info!(
        train = splits.train.len(),
        test = splits.test.len(),
        seconds = started.elapsed().as_secs_f64(),
        "loaded {spec}"
    );
    Ok((spec, splits))
}

/// A preset by name or a ModelSpec JSON file, checked against the data's classes and input.
fn resolve_spec(
    arch: &str,
    width: f64,
    format: &InputFormat,
    num_classes: usize,
) -> Result<ModelSpec> {
    if !(width > 0.0 && width.is_finite()) {
        bail!("--width must be a positive number, got {width}");
    }
    let spec = match presets::by_name(arch, width, format.channels, num_classes) {
        Some(mut s) => {
            s.input.height = format.size;
            s.input.width = format.size;
            s
        }
        None => {
            let path = Path::new(arch);
            if !path.exists() {
                bail!(
                    "--arch {arch}: neither a preset ({}) nor an existing ModelSpec JSON file",
                    presets::PRESET_NAMES.join(", ")
                );
            }
            ModelSpec::from_json_file(path)?
        }
    };
    if spec.num_classes != num_classes {
        bail!(
            "model spec `{}` has {} classes, the dataset has {num_classes}",
            spec.name,
            spec.num_classes
        );
    }
    if spec.input.channels != format.channels
        || spec.input.height != format.size
        || spec.input.width != format.size
    {
        bail!(
            "model spec `{}` takes {}×{}×{} input, the dataset gives {}×{}×{}",
            spec.name,
            spec.input.channels,
            spec.input.height,
            spec.input.width,
            format.channels,
            format.size,
            format.size
        );
    }
    spec.analyse()?;
    Ok(spec)
}

fn augment_for(choice: AugmentChoice, kind: DatasetKind) -> Option<Augment> {
    match choice {
        AugmentChoice::Auto => Augment::for_dataset(kind),
        AugmentChoice::None => None,
        AugmentChoice::Crop => Some(Augment {
            hflip: false,
            crop_padding: 4,
        }),
        AugmentChoice::FlipCrop => Some(Augment {
            hflip: true,
            crop_padding: 4,
        }),
    }
}

/// The ops a model on `dev` runs with: the `--ops` choice on CPU, candle's own elsewhere.
pub fn ops_for(g: &Global, dev: &Device) -> cnn_models::OpsBackend {
    if dev.is_cpu() {
        g.ops
    } else {
        cnn_models::OpsBackend::Candle
    }
}

pub fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).expect("serialisable"));
}

pub fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

fn train(g: &Global, a: TrainArgs) -> Result<()> {
    let report = train_model(g, &a)?;
    if g.json {
        print_json(&report);
    } else {
        println!(
            "trained {} → {}: best epoch {} (val {}), test accuracy {} on {} images",
            report["arch"].as_str().unwrap_or(""),
            a.out.display(),
            report["best_epoch"],
            pct(report["best_val_accuracy"].as_f64().unwrap_or(0.0)),
            pct(report["test_accuracy"].as_f64().unwrap_or(0.0)),
            report["test_images"]
        );
    }
    Ok(())
}

/// Train, evaluate on the test split, save; returns a JSON summary.
fn train_model(g: &Global, a: &TrainArgs) -> Result<serde_json::Value> {
    let dev = device(g.device)?;
    let (dspec, data) = load_data(&a.dataset)?;
    let format = InputFormat::for_dataset(dspec.kind);
    let spec = resolve_spec(
        &a.arch.arch,
        a.arch.width,
        &format,
        data.train.num_classes(),
    )?;
    let split = match a.estimator {
        Some(seed) => DataSplit::Estimator {
            seed,
            alpha: a.dirichlet_alpha,
            min_size: a.min_size,
        },
        None => DataSplit::Holdout {
            val_fraction: a.val_fraction,
            limit: a.limit,
        },
    };
    let cfg = TrainConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        momentum: a.momentum,
        weight_decay: a.weight_decay,
        lr_milestones: a.milestones.clone(),
        lr_gamma: 0.1,
        augment: augment_for(a.augment, dspec.kind),
        seed: a.seed,
        eval_batch: 256,
    };
    if a.out.join(cnn_models::files::META_FILE).exists() && !a.resume {
        bail!(
            "{} already holds a model: choose another --out, delete it, or pass --resume",
            a.out.display()
        );
    }
    let run = TrainRun {
        spec,
        dataset: dspec.to_string(),
        data: &data,
        format,
        split,
        config: cfg,
        out: &a.out,
        resume: cnn_models::Resume::continue_if(a.resume),
        ops: ops_for(g, &dev),
        device: &dev,
    };
    if !g.quiet {
        let an = run.spec.analyse()?;
        let (train_idx, val_idx) = run.parts()?;
        eprintln!(
            "training {} (width {}, {} params, {} kernels) on {}: {} train / {} val images, {} epochs",
            run.spec.name,
            a.arch.width,
            an.params(),
            an.total_kernels(),
            dspec,
            train_idx.len(),
            val_idx.len(),
            a.epochs
        );
    }
    let mut progress = TrainProgress::new(g.quiet);
    let trained = train_and_save(&run, &mut |e| progress.event(e))?;
    let an = trained.model.analysis();
    Ok(json!({
        "model": a.out,
        "arch": run.spec.name,
        "width": a.arch.width,
        "params": an.params(),
        "kernels": an.total_kernels(),
        "macs": an.macs(),
        "train_images": trained.train_images,
        "val_images": trained.val_images,
        "epochs": trained.report.records,
        "best_epoch": trained.report.best_epoch,
        "best_val_accuracy": trained.report.best_val_accuracy,
        "test_accuracy": trained.test.accuracy,
        "test_images": trained.test.samples,
        "test_per_class": trained.test.per_class,
        "train_seconds": trained.train_seconds,
        "weights_sha256": trained.weights_sha256,
    }))
}

/// The model, patched model or composed model at `path`, loaded with the `--device` and
/// `--ops` choice; a class module is refused as a model directory without `model.json`.
fn open_runnable(g: &Global, path: &Path) -> Result<(Artifact, Device)> {
    let dev = device(g.device)?;
    if ArtifactKind::of(path) == Some(ArtifactKind::Module) {
        return Err(not_a_model(path));
    }
    let mut artifact = Artifact::open(path, &dev)?;
    artifact.set_ops(ops_for(g, &dev));
    Ok((artifact, dev))
}

/// The error for a path that holds no model (a class module, say) where one is needed.
fn not_a_model(path: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: not a model directory (no model.json)",
        cnn_models::files::model_dir(path).display()
    )
}

fn eval(g: &Global, a: EvalArgs) -> Result<()> {
    let (model, meta) = match open_runnable(g, &a.model)?.0 {
        Artifact::Patched(p) => return crate::patch::eval_patched(g, &a, &p),
        Artifact::Composed(c) => return crate::reuse::eval_composed(g, &a, &c),
        Artifact::Model(model, meta) => (model, meta),
        Artifact::Module(_) => return Err(not_a_model(&a.model)),
    };
    let dataset = a.dataset.clone().unwrap_or_else(|| meta.dataset.clone());
    let (dspec, data) = load_data(&dataset)?;
    check_classes(&meta, &data.train, &a.model)?;
    let (set, indices): (&ImageSet, Vec<usize>) = match a.split {
        SplitChoice::Test => (&data.test, (0..data.test.len()).collect()),
        SplitChoice::Val | SplitChoice::Train => {
            let split: DataSplit = recorded_split(&meta).with_context(|| {
                format!(
                    "{}: model.json records no training split",
                    a.model.display()
                )
            })?;
            let (tr, va) = split.indices(&data.train, meta.seed.unwrap_or(0))?;
            (
                &data.train,
                if a.split == SplitChoice::Val { va } else { tr },
            )
        }
    };
    let ev = cnn_models::evaluate(&model, set, &indices, &meta.input_format, a.batch_size)?;
    if g.json {
        print_json(
            &json!({"model": a.model, "dataset": dspec.to_string(), "split": format!("{:?}", a.split).to_lowercase(),
            "class_names": meta.class_names, "evaluation": ev}),
        );
    } else {
        print_evaluation(&ev, &meta.class_names);
    }
    Ok(())
}

/// The train/validation split a model's training run recorded in `model.json`, if any.
pub fn recorded_split(meta: &ModelMeta) -> Option<DataSplit> {
    let value = meta.training.as_ref()?.get("split")?;
    serde_json::from_value(value.clone()).ok()
}

fn check_classes(meta: &ModelMeta, set: &ImageSet, model_path: &Path) -> Result<()> {
    if set.num_classes() != meta.spec.num_classes {
        bail!(
            "{}: the model has {} classes, dataset `{}` has {}",
            model_path.display(),
            meta.spec.num_classes,
            set.name,
            set.num_classes()
        );
    }
    Ok(())
}

pub fn print_evaluation(ev: &Evaluation, names: &[String]) {
    println!("accuracy {} on {} images", pct(ev.accuracy), ev.samples);
    println!(
        "{:<14} {:>9} {:>9} {:>9} {:>8}",
        "class", "precision", "recall", "F1", "support"
    );
    for (c, m) in ev.per_class.iter().enumerate() {
        let name = names.get(c).cloned().unwrap_or_else(|| c.to_string());
        println!(
            "{:<14} {:>9.4} {:>9.4} {:>9.4} {:>8}",
            name, m.precision, m.recall, m.f1, m.support
        );
    }
    println!("confusion matrix (rows: true class, columns: predicted)");
    for row in &ev.confusion.counts {
        println!(
            "  {}",
            row.iter()
                .map(|v| format!("{v:>5}"))
                .collect::<Vec<_>>()
                .join("")
        );
    }
}

/// What `predict` reads: raw images (an IDX file or an image folder), or already-normalised
/// tensors (safetensors `images`).
pub enum PredictInput {
    /// Raw images, to convert with the model's input format.
    Images(ImageSet),
    /// Normalised images `[N, C, H, W]`.
    Normalised(Tensor),
}

/// Read `predict`'s input: a folder of png/jpg images, a safetensors file with `images`, or an
/// IDX image file.
pub fn read_predict_input(path: &Path) -> Result<PredictInput> {
    if path.is_dir() {
        let dir = path
            .canonicalize()
            .with_context(|| format!("{}: unreadable folder", path.display()))?;
        let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
            bail!(
                "{}: cannot read images from the file-system root",
                path.display()
            );
        };
        let set = cnn_data::image_folder::read_image_folder(
            parent,
            &[name.to_string_lossy().to_string()],
            "input",
            None,
        )
        .with_context(|| format!("--input {}", path.display()))?;
        if set.is_empty() {
            bail!("{}: no .png or .jpg images in this folder", path.display());
        }
        return Ok(PredictInput::Images(set));
    }
    let is_safetensors = path
        .extension()
        .map(|e| e == "safetensors")
        .unwrap_or(false);
    if is_safetensors {
        let tensors = candle_core::safetensors::load(path, &Device::Cpu)
            .with_context(|| format!("{}: not a readable safetensors file", path.display()))?;
        let images = tensors.get("images").with_context(|| {
            format!(
                "{}: no `images` tensor (expected [N, C, H, W] f32)",
                path.display()
            )
        })?;
        return Ok(PredictInput::Normalised(
            images.to_dtype(candle_core::DType::F32)?,
        ));
    }
    let im = cnn_data::idx::read_idx_images(path)?;
    let shape = cnn_data::ImageShape {
        channels: 1,
        height: im.rows,
        width: im.cols,
    };
    Ok(PredictInput::Images(ImageSet::new(
        "input",
        shape,
        im.pixels,
        vec![0; im.count],
        vec!["image".into()],
    )?))
}

/// Images for `predict` as normalised tensors: raw images are converted with `format`.
fn predict_inputs(path: &Path, format: &InputFormat, dev: &Device) -> Result<Tensor> {
    match read_predict_input(path)? {
        PredictInput::Images(set) => {
            let idx: Vec<usize> = (0..set.len()).collect();
            Ok(cnn_data::to_tensor(&set, &idx, format, None, dev)?.0)
        }
        PredictInput::Normalised(x) => Ok(x.to_device(dev)?),
    }
}

fn predict(g: &Global, a: PredictArgs) -> Result<()> {
    let (artifact, dev) = open_runnable(g, &a.model)?;
    let (model, meta) = match artifact {
        Artifact::Composed(c) => return crate::reuse::predict_composed(g, &a, &c),
        Artifact::Patched(p) => {
            let x = predict_inputs(&a.input, &p.meta.input_format, p.model.device())?;
            check_input_shape(&x, p.model.spec(), &a.input)?;
            return crate::patch::predict_patched(g, &a, &x, &p);
        }
        Artifact::Model(model, meta) => (model, meta),
        Artifact::Module(_) => return Err(not_a_model(&a.model)),
    };
    let x = predict_inputs(&a.input, &meta.input_format, &dev)?;
    check_input_shape(&x, model.spec(), &a.input)?;
    let logits = model.predict_logits(&x, a.batch_size)?;
    let n = model.spec().num_classes;
    let values: Vec<f32> = logits.flatten_all()?.to_vec1()?;
    let preds = argmax_rows(&values, n);
    let mut map = std::collections::BTreeMap::new();
    map.insert("logits".to_string(), logits.to_device(&Device::Cpu)?);
    let bytes = cnn_models::weights::safetensors_bytes(&map, &[])?;
    atomic_write(&a.output, &bytes)?;
    if g.json {
        let classes: Vec<&str> = preds
            .iter()
            .map(|&p| meta.class_names[p as usize].as_str())
            .collect();
        print_json(
            &json!({"output": a.output, "images": preds.len(), "predicted": preds, "predicted_names": classes}),
        );
    } else {
        println!(
            "wrote logits of {} images to {}",
            preds.len(),
            a.output.display()
        );
    }
    Ok(())
}

pub fn check_input_shape(x: &Tensor, spec: &cnn_models::ModelSpec, input: &Path) -> Result<()> {
    let expected = [spec.input.channels, spec.input.height, spec.input.width];
    if x.rank() != 4 || x.dims()[1..] != expected {
        bail!(
            "{}: images have shape {:?}, the model expects [N, {}, {}, {}]",
            input.display(),
            x.dims(),
            expected[0],
            expected[1],
            expected[2]
        );
    }
    Ok(())
}

fn import(g: &Global, a: ImportArgs) -> Result<()> {
    let dev = device(g.device)?;
    let dspec: DatasetSpec = a
        .dataset
        .parse()
        .with_context(|| format!("--dataset {}", a.dataset))?;
    let format = InputFormat::for_dataset(dspec.kind);
    let class_names = dspec
        .kind
        .class_names()
        .filter(|n| n.len() == a.num_classes)
        .unwrap_or_else(|| (0..a.num_classes).map(|c| c.to_string()).collect());
    let spec = resolve_spec(&a.arch.arch, a.arch.width, &format, a.num_classes)?;
    let model = cnn_models::files::import_state_dict(&a.weights, spec.clone(), &dev)?;
    let mut meta = ModelMeta::new(spec, format, dspec.to_string(), class_names);
    meta.training = Some(json!({"imported_from": a.weights}));
    let sha = cnn_models::save_model(&a.out, &model, &meta)?;
    if g.json {
        print_json(
            &json!({"model": a.out, "weights_sha256": sha, "tensors": model.tensors().len()}),
        );
    } else {
        println!(
            "imported {} tensors from {} into {}",
            model.tensors().len(),
            a.weights.display(),
            a.out.display()
        );
    }
    Ok(())
}

fn inspect(g: &Global, a: InspectArgs) -> Result<()> {
    if let Some(module) = &a.module {
        return crate::modules::inspect_module(g, module);
    }
    if let Some(m) = a
        .model
        .as_ref()
        .filter(|m| ArtifactKind::of(m) == Some(ArtifactKind::Composed))
    {
        if let (Artifact::Composed(c), _) = open_runnable(g, m)? {
            return crate::reuse::inspect_composed(g, m, &c);
        }
    }
    let (spec, source) = match (&a.model, &a.arch) {
        (Some(m), _) => {
            let meta = cnn_models::files::read_meta(
                &cnn_models::files::model_dir(m).join(cnn_models::files::META_FILE),
            )?;
            (meta.spec, m.display().to_string())
        }
        (None, Some(arch)) => {
            let spec = match presets::by_name(arch, a.width, 3, a.num_classes) {
                Some(s) => s,
                None => ModelSpec::from_json_file(Path::new(arch))?,
            };
            (spec, arch.clone())
        }
        (None, None) => bail!("inspect needs --model DIR, --module DIR or --arch NAME"),
    };
    let an = spec.analyse()?;
    if g.json {
        print_json(&json!({
            "source": source, "spec": spec, "layers": an.rows, "params": an.params(), "kernels": an.total_kernels(),
            "macs": an.macs(), "conv_macs": an.conv_macs(), "mask_sites": an.sites.len(),
        }));
        return Ok(());
    }
    println!(
        "{} ({}), input {}×{}×{}, {} classes",
        spec.name,
        source,
        spec.input.channels,
        spec.input.height,
        spec.input.width,
        spec.num_classes
    );
    println!(
        "{:<14} {:<32} {:>14} {:>12} {:>14}",
        "layer", "op", "output", "params", "MACs"
    );
    for r in &an.rows {
        println!(
            "{:<14} {:<32} {:>14} {:>12} {:>14}",
            r.path, r.description, r.output, r.params, r.macs
        );
    }
    println!(
        "total: {} parameters, {} conv kernels in {} mask sites, {} MACs per image ({:.2} GFLOP)",
        an.params(),
        an.total_kernels(),
        an.sites.len(),
        an.macs(),
        2.0 * an.macs() as f64 / 1e9
    );
    Ok(())
}

fn demo(g: &Global, a: DemoArgs) -> Result<()> {
    let started = Instant::now();
    let out: PathBuf = a.out.clone();
    if out.exists() {
        std::fs::remove_dir_all(&out)
            .with_context(|| format!("clearing the previous demo in {}", out.display()))?;
    }
    if !g.quiet {
        eprintln!(
            "cnnsplit demo on the bundled Fashion-MNIST subset ({}):\n  1. train a SimCNN (width {})\n  2. split it into 10 class modules with GradSplitter (short schedule)\n  3. compose the modules and compare with the model\n  4. train a small weak model and patch its weakest class with a module",
            cnn_data::bundled_dataset_dir().display(),
            a.width
        );
    }
    let model_dir = out.join("model");
    let targs = TrainArgs {
        arch: ArchArgs {
            arch: "simcnn".into(),
            width: a.width,
        },
        dataset: "fashion-mnist".into(),
        epochs: a.epochs,
        batch_size: 64,
        lr: 0.01,
        momentum: 0.9,
        weight_decay: 1e-4,
        milestones: vec![],
        val_fraction: 0.1,
        estimator: None,
        dirichlet_alpha: 1.0,
        min_size: 100,
        augment: AugmentChoice::None,
        seed: a.seed,
        out: model_dir.clone(),
        resume: false,
        limit: None,
    };
    let report = train_model(g, &targs)?;
    let train_seconds = started.elapsed().as_secs_f64();
    let modules_dir = out.join("modules");
    let split_config = splitter_grad::GradSplitConfig {
        warmup_epochs: 2,
        mask_epochs: a.split_epochs,
        pattern_mask: 3,
        pattern_head: 1,
        mask_lr: 0.05,
        head_lr: 0.005,
        seed: a.seed,
        ..Default::default()
    };
    let target = crate::modules::DecomposeTarget {
        model: &model_dir,
        dataset: None,
        out: &modules_dir,
        limit: Some(a.split_images),
        resume: false,
    };
    let record = crate::modules::decompose_grad(g, &target, &split_config)?.record;
    let modules = crate::modules::load_modules(
        std::slice::from_ref(&modules_dir),
        Some(record.model_sha256.as_str()),
        g,
    )?;
    let (_, data) = load_data("fashion-mnist")?;
    let all: Vec<usize> = (0..data.test.len()).collect();
    let scores = composer::score_images(&modules, &data.test, &all, 256)?;
    let preds = argmax_rows(&scores, modules.len());
    let labels: Vec<u32> = data.test.labels.iter().map(|&l| l as u32).collect();
    let composed = Evaluation::new(&labels, &preds, modules.len());
    let model_acc = report["test_accuracy"].as_f64().unwrap_or(0.0);
    let kernels: Vec<u64> = modules.iter().map(|m| m.meta.kernels as u64).collect();
    let mean_krr = modules.iter().map(|m| m.meta.krr).sum::<f64>() / modules.len().max(1) as f64;
    // 4. a weak model (the small SimCNNWeak, 3 epochs on a fifth of the images), patched on its
    // weakest class
    let weak_dir = out.join("weak-model");
    let weak_args = TrainArgs {
        arch: ArchArgs {
            arch: "simcnn-weak".into(),
            width: 1.0,
        },
        epochs: 3,
        lr: 0.02,
        limit: Some(1200),
        out: weak_dir.clone(),
        ..targs
    };
    let weak_report = train_model(g, &weak_args)?;
    let weak_f1: Vec<f64> = weak_report["test_per_class"]
        .as_array()
        .map(|v| v.iter().map(|c| c["f1"].as_f64().unwrap_or(0.0)).collect())
        .unwrap_or_default();
    let weakest = (0..weak_f1.len())
        .min_by(|&x, &y| weak_f1[x].total_cmp(&weak_f1[y]))
        .unwrap_or(0);
    let patched_dir = out.join("patched");
    let pargs = PatchArgs {
        model: weak_dir.clone(),
        module: modules_dir.join(format!("module_{weakest}")),
        target: Some(weakest.to_string()),
        dataset: None,
        calibration: CalibrationChoice::Minmax,
        clip: false,
        out: Some(patched_dir.clone()),
        batch_size: 256,
    };
    let (patch_report, patch_summary) = crate::patch::patch_model(g, &pargs)?;
    let seconds = started.elapsed().as_secs_f64();
    let summary = json!({
        "model": report, "decomposition": record.to_json_value()?, "composed_test_accuracy": composed.accuracy,
        "module_kernels": kernels, "mean_krr": mean_krr, "train_seconds": train_seconds,
        "weak_model": weak_report, "patch": patch_summary, "total_seconds": seconds,
    });
    atomic_write(
        &out.join("demo.json"),
        &serde_json::to_vec_pretty(&summary)?,
    )?;
    if g.json {
        print_json(&summary);
    } else {
        println!("\n== cnnsplit demo summary ==");
        println!(
            "model        {} (SimCNN width {}, {} params, {} conv kernels)",
            model_dir.display(),
            a.width,
            report["params"],
            report["kernels"]
        );
        println!(
            "training     {} epochs, best epoch {} (validation {}), {train_seconds:.0} s",
            a.epochs,
            report["best_epoch"],
            pct(report["best_val_accuracy"].as_f64().unwrap_or(0.0))
        );
        println!(
            "modules      {} in {} (GradSplitter, chosen epoch {}, {:.0} s)",
            modules.len(),
            modules_dir.display(),
            record.method_fields.chosen_epoch,
            record.seconds
        );
        println!(
            "kernels      per module {:?} of {}, mean retention {}",
            kernels,
            report["kernels"],
            pct(mean_krr)
        );
        println!(
            "test         model {} → composed modules {} on {} images ({:+.2} pp)",
            pct(model_acc),
            pct(composed.accuracy),
            composed.samples,
            100.0 * (composed.accuracy - model_acc)
        );
        println!(
            "weak model   {} (SimCNNWeak, 3 epochs on 1,200 images): test accuracy {}",
            weak_dir.display(),
            pct(weak_report["test_accuracy"].as_f64().unwrap_or(0.0))
        );
        crate::patch::print_patch_report(
            &patch_report,
            patch_summary["target_class"].as_str().unwrap_or(""),
            "the bundled data",
        );
        println!(
            "patched      {} (runs with eval and predict)",
            patched_dir.display()
        );
        println!("time         {seconds:.0} s in all");
        println!(
            "next         cnnsplit compose --modules {} --model {}",
            modules_dir.display(),
            model_dir.display()
        );
    }
    Ok(())
}
