//! `reuse select` and `reuse new-task` (design §8), and running composed-model directories in
//! `eval`, `predict` and `inspect`.
//!
//! Both scenarios work on a *task*: a list of classes, each the images of one class of one of
//! the given datasets. Each dataset's official test split is cut per class in file order: the
//! first `--selection-fraction` of each class's test images chooses modules (the spec's
//! module-evaluation set), the rest is the test part every accuracy is reported on. For a
//! shuffled test file this is the spec's file-order cut up to rounding; for a file sorted by
//! class (mnist-5k) it is the only cut that gives every class selection images.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use cnn_data::{DatasetSpec, DatasetSplits, ImageSet};
use cnn_models::metrics::{argmax_rows, Evaluation};
use cnn_models::{Model, ModelMeta, Module, TrainConfig};
use composer::{
    best_by_f1, binary_module_metrics, check_composable, is_composed, load_composed, save_composed,
    score_images, softmax_rows, ClassMetrics, ComposedClass, ComposedModel, CompositionManifest,
};
use serde_json::json;

use crate::args::*;
use crate::commands::{device, load_data, ops_for, pct, print_evaluation, print_json};
use crate::modules::load_modules;
use crate::progress::TrainProgress;

/// Where a task class's images come from: class `class` of dataset `dataset` (indices into
/// the loaded datasets and their class lists).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ClassSource {
    dataset: usize,
    class: usize,
}

/// A task's images: three sets whose labels are task labels.
struct TaskSets {
    /// Each dataset's training split, filtered to the task.
    train: ImageSet,
    /// The first `selection_fraction` of each test split, filtered to the task.
    selection: ImageSet,
    /// The rest of each test split, filtered to the task.
    test: ImageSet,
}

/// Loaded datasets of a task, with their specification strings.
struct TaskData {
    specs: Vec<DatasetSpec>,
    splits: Vec<DatasetSplits>,
}

impl TaskData {
    fn load(datasets: &[String]) -> Result<Self> {
        let mut specs = Vec::new();
        let mut splits = Vec::new();
        for d in datasets {
            let (spec, data) = load_data(d)?;
            if let Some(same) = specs.iter().find(|s: &&DatasetSpec| s.kind == spec.kind) {
                bail!("--dataset {spec}: a dataset of this kind is already given ({same})");
            }
            if let Some((i, first)) = splits
                .first()
                .map(|f: &DatasetSplits| (0, f))
                .filter(|(_, f)| f.test.shape != data.test.shape)
            {
                let s = data.test.shape;
                let f = first.test.shape;
                bail!(
                    "--dataset {spec}: images are {}×{}×{}, those of {} are {}×{}×{}; the datasets of one task must share one image format",
                    s.channels,
                    s.height,
                    s.width,
                    specs[i],
                    f.channels,
                    f.height,
                    f.width
                );
            }
            specs.push(spec);
            splits.push(data);
        }
        Ok(TaskData { specs, splits })
    }

    /// Which dataset and class a module's images come from: the module's recorded dataset
    /// when it names one of ours, else the one dataset with a class of that name.
    fn source_of(
        &self,
        class_name: &str,
        dataset: Option<&str>,
        what: &str,
    ) -> Result<ClassSource> {
        let recorded = dataset.and_then(|d| d.parse::<DatasetSpec>().ok());
        let candidates: Vec<usize> = match &recorded {
            Some(r) if self.specs.iter().any(|s| s.kind == r.kind) => self
                .specs
                .iter()
                .position(|s| s.kind == r.kind)
                .into_iter()
                .collect(),
            _ => (0..self.specs.len())
                .filter(|&d| {
                    self.splits[d]
                        .test
                        .class_names
                        .iter()
                        .any(|n| n == class_name)
                })
                .collect(),
        };
        let names = || {
            self.specs
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let dataset = match candidates.as_slice() {
            [d] => *d,
            [] => match recorded {
                Some(r) => bail!("{what}: its model was trained on {r}, which is not among the given datasets ({})", names()),
                None => bail!("{what}: no given dataset ({}) has a class named {class_name:?}", names()),
            },
            _ => bail!(
                "{what}: several given datasets ({}) have a class named {class_name:?} and the module does not record its dataset",
                names()
            ),
        };
        let class = self.splits[dataset]
            .test
            .class_names
            .iter()
            .position(|n| n == class_name)
            .with_context(|| {
                format!(
                    "{what}: dataset {} has no class named {class_name:?}",
                    self.specs[dataset]
                )
            })?;
        Ok(ClassSource { dataset, class })
    }

    /// The task's sets for task classes `sources` (label = position) and names `names`.
    fn task_sets(
        &self,
        sources: &[ClassSource],
        names: &[String],
        selection_fraction: f64,
    ) -> Result<TaskSets> {
        let label_of = |d: usize, class: u16| {
            sources
                .iter()
                .position(|s| s.dataset == d && s.class == class as usize)
        };
        let shape = self.splits[0].test.shape;
        let pixels = shape.pixels();
        let mut parts: [(Vec<u8>, Vec<u16>); 3] = Default::default();
        for (d, data) in self.splits.iter().enumerate() {
            // per class, the first ⌊f·n_c⌋ test images in file order select modules
            let classes = data.test.num_classes();
            let mut totals = vec![0usize; classes];
            for &l in &data.test.labels {
                totals[l as usize] += 1;
            }
            let quota: Vec<usize> = totals
                .iter()
                .map(|&n| (selection_fraction * n as f64).floor() as usize)
                .collect();
            let mut seen = vec![0usize; classes];
            let mut push = |part: usize, set: &ImageSet, i: usize, label: usize| {
                parts[part]
                    .0
                    .extend_from_slice(&set.images[i * pixels..(i + 1) * pixels]);
                parts[part].1.push(label as u16);
            };
            for i in 0..data.train.len() {
                if let Some(label) = label_of(d, data.train.labels[i]) {
                    push(0, &data.train, i, label);
                }
            }
            for i in 0..data.test.len() {
                let c = data.test.labels[i] as usize;
                let part = if seen[c] < quota[c] { 1 } else { 2 };
                seen[c] += 1;
                if let Some(label) = label_of(d, data.test.labels[i]) {
                    push(part, &data.test, i, label);
                }
            }
        }
        let [train, selection, test] = parts;
        let make = |name: &str, (images, labels): (Vec<u8>, Vec<u16>)| {
            ImageSet::new(
                format!("task/{name}"),
                shape,
                images,
                labels,
                names.to_vec(),
            )
        };
        let sets = TaskSets {
            train: make("train", train)?,
            selection: make("selection", selection)?,
            test: make("test", test)?,
        };
        if sets.test.is_empty() {
            bail!("the task's test part is empty: no test image of its classes after the first {} of each test split", pct(selection_fraction));
        }
        Ok(sets)
    }
}

fn labels_of(set: &ImageSet) -> Vec<u32> {
    set.labels.iter().map(|&l| l as u32).collect()
}

fn check_fraction(f: f64) -> Result<()> {
    if !(f > 0.0 && f < 1.0) {
        bail!("--selection-fraction must be within (0, 1), got {f}");
    }
    Ok(())
}

fn check_method(modules: &[(PathBuf, Module)]) -> Result<()> {
    if let Some((dir, m)) = modules.iter().find(|(_, m)| m.meta.method != "grad") {
        bail!(
            "{}: a `{}` module; reuse chooses modules by their probability (score > 0.5), which only GradSplitter modules give",
            dir.display(),
            m.meta.method
        );
    }
    Ok(())
}

/// Binary metrics of every module on the selection images, against task label `labels[j]`.
fn selection_metrics(
    modules: &[Module],
    task_labels: &[u32],
    set: &ImageSet,
    batch: usize,
) -> Result<Vec<ClassMetrics>> {
    let idx: Vec<usize> = (0..set.len()).collect();
    let k = modules.len();
    let scores = score_images(modules, set, &idx, batch)?;
    let labels = labels_of(set);
    (0..k)
        .map(|j| {
            let column: Vec<f32> = scores.iter().skip(j).step_by(k).copied().collect();
            Ok(binary_module_metrics(&column, &labels, task_labels[j])?)
        })
        .collect()
}

/// Accuracy and per-class metrics of a composition on a set.
fn evaluate_composed(modules: &[Module], set: &ImageSet, batch: usize) -> Result<Evaluation> {
    let idx: Vec<usize> = (0..set.len()).collect();
    let scores = score_images(modules, set, &idx, batch)?;
    let preds = argmax_rows(&scores, modules.len());
    Ok(Evaluation::new(&labels_of(set), &preds, modules.len()))
}

/// With `--out`, save the composition of `classes` with `record` as its report, refusing a
/// directory that already holds one.
fn save_composition(
    out: Option<&PathBuf>,
    kind: &str,
    classes: Vec<ComposedClass>,
    datasets: Vec<String>,
    selection_fraction: f64,
    record: &serde_json::Value,
) -> Result<()> {
    let Some(out) = out else {
        return Ok(());
    };
    if is_composed(out) {
        bail!(
            "{} already holds a composed model: choose another --out or delete it",
            out.display()
        );
    }
    let mut manifest = CompositionManifest::new(kind, classes, datasets, selection_fraction);
    manifest.report = Some(record.clone());
    save_composed(out, &manifest)?;
    Ok(())
}

fn module_label(dir: &Path, m: &Module) -> String {
    format!("{} ({})", dir.display(), m.meta.class_name)
}

/// `reuse select`: run it, print the table, return the record.
pub fn select(g: &Global, a: &ReuseSelectArgs) -> Result<serde_json::Value> {
    check_fraction(a.selection_fraction)?;
    let dev = device(g.device)?;
    let ops = ops_for(g, &dev);
    let mut models: Vec<(Model, ModelMeta)> = Vec::new();
    for p in &a.models {
        let (mut m, meta) = cnn_models::load_model(p, &dev)?;
        m.set_ops(ops);
        models.push((m, meta));
    }
    let dataset = a
        .dataset
        .clone()
        .unwrap_or_else(|| models[0].1.dataset.clone());
    let task = TaskData::load(std::slice::from_ref(&dataset))?;
    let names = task.splits[0].test.class_names.clone();
    for (p, (m, _)) in a.models.iter().zip(&models) {
        if m.spec().num_classes != names.len() {
            bail!(
                "{}: the model has {} classes, dataset `{}` has {}",
                p.display(),
                m.spec().num_classes,
                task.specs[0],
                names.len()
            );
        }
    }
    // candidate i = model i; its module of class c
    let mut candidates: Vec<Vec<Option<(PathBuf, Module)>>> =
        (0..models.len()).map(|_| vec![None; names.len()]).collect();
    for dir in &a.modules {
        let loaded = load_modules(std::slice::from_ref(dir), None, g)?;
        for m in loaded {
            let here = dir.join(format!("module_{}", m.meta.class_index));
            let place = if here.exists() { here } else { dir.clone() };
            let Some(i) = models
                .iter()
                .position(|(_, meta)| meta.weights_sha256 == m.meta.parent_sha256)
            else {
                bail!(
                    "{}: module of class {:?} comes from a model (weights {}) that is not among --models",
                    place.display(),
                    m.meta.class_name,
                    &m.meta.parent_sha256[..m.meta.parent_sha256.len().min(16)]
                );
            };
            let c = m.meta.class_index;
            if names.get(c) != Some(&m.meta.class_name) {
                bail!(
                    "{}: module of class {c} {:?}, but class {c} of {} is {:?}",
                    place.display(),
                    m.meta.class_name,
                    task.specs[0],
                    names.get(c)
                );
            }
            candidates[i][c] = Some((place, m));
        }
    }
    for (i, per_class) in candidates.iter().enumerate() {
        if let Some(c) = per_class.iter().position(Option::is_none) {
            bail!(
                "{}: no module of class {c} ({:?}) among --modules; every model needs a module per class",
                a.models[i].display(),
                names[c]
            );
        }
    }
    let flat: Vec<(PathBuf, Module)> = candidates.into_iter().flatten().flatten().collect();
    check_method(&flat)?;
    let metas: Vec<(PathBuf, &cnn_models::ModuleMeta)> =
        flat.iter().map(|(p, m)| (p.clone(), &m.meta)).collect();
    check_composable(&metas)?;
    let sources: Vec<ClassSource> = (0..names.len())
        .map(|class| ClassSource { dataset: 0, class })
        .collect();
    let sets = task.task_sets(&sources, &names, a.selection_fraction)?;
    let started = Instant::now();
    let n = names.len();
    let modules: Vec<Module> = flat.iter().map(|(_, m)| m.clone()).collect();
    let task_labels: Vec<u32> = flat
        .iter()
        .map(|(_, m)| m.meta.class_index as u32)
        .collect();
    let metrics = selection_metrics(&modules, &task_labels, &sets.selection, a.batch_size)?;
    // metrics[i * n + c] = model i, class c
    let chosen: Vec<usize> = (0..n)
        .map(|c| {
            let column: Vec<ClassMetrics> = (0..models.len()).map(|i| metrics[i * n + c]).collect();
            best_by_f1(&column).unwrap_or(0)
        })
        .collect();
    let chosen_modules: Vec<Module> = (0..n).map(|c| modules[chosen[c] * n + c].clone()).collect();
    let composed = evaluate_composed(&chosen_modules, &sets.test, a.batch_size)?;
    // the models and their ensemble on the test part
    let test_idx: Vec<usize> = (0..sets.test.len()).collect();
    let labels = labels_of(&sets.test);
    let mut model_acc = Vec::new();
    let mut mean_prob = vec![0f64; sets.test.len() * n];
    for (m, meta) in &models {
        let mut logits = Vec::with_capacity(sets.test.len() * n);
        for chunk in test_idx.chunks(a.batch_size.max(1)) {
            let (x, _) = cnn_data::to_tensor(&sets.test, chunk, &meta.input_format, None, &dev)?;
            let l: Vec<f32> = m.forward_eval(&x)?.flatten_all()?.to_vec1()?;
            logits.extend(l);
        }
        let preds = argmax_rows(&logits, n);
        model_acc.push(Evaluation::new(&labels, &preds, n).accuracy);
        for (acc, p) in mean_prob.iter_mut().zip(softmax_rows(&logits, n)?) {
            *acc += p / models.len() as f64;
        }
    }
    let ensemble_preds = composer::row_argmax(&mean_prob, n);
    let ensemble = Evaluation::new(&labels, &ensemble_preds, n).accuracy;
    let best = model_acc.iter().copied().fold(f64::MIN, f64::max);
    let mean = model_acc.iter().sum::<f64>() / model_acc.len() as f64;
    let seconds = started.elapsed().as_secs_f64();
    let classes: Vec<ComposedClass> = (0..n)
        .map(|c| {
            let (dir, m) = &flat[chosen[c] * n + c];
            ComposedClass::from_module(c as u32, &names[c], dir, &m.meta)
        })
        .collect();
    let f1_table: Vec<Vec<f64>> = (0..models.len())
        .map(|i| (0..n).map(|c| metrics[i * n + c].f1).collect())
        .collect();
    let record = json!({
        "scenario": "select", "dataset": task.specs[0].to_string(), "class_names": names,
        "models": a.models, "model_test_accuracy": model_acc,
        "best_model_accuracy": best, "mean_model_accuracy": mean, "ensemble_accuracy": ensemble,
        "composed_accuracy": composed.accuracy, "gain_over_best": composed.accuracy - best,
        "chosen_model": chosen, "selection_f1": f1_table,
        "selection_metrics": (0..models.len()).map(|i| (0..n).map(|c| {
            let m = metrics[i * n + c];
            json!({"precision": m.precision, "recall": m.recall, "f1": m.f1})
        }).collect::<Vec<_>>()).collect::<Vec<_>>(),
        "selection_images": sets.selection.len(), "test_images": sets.test.len(),
        "selection_fraction": a.selection_fraction, "composed": composed, "seconds": seconds,
        "out": a.out,
    });
    save_composition(
        a.out.as_ref(),
        "select",
        classes,
        vec![dataset.clone()],
        a.selection_fraction,
        &record,
    )?;
    if g.json {
        print_json(&record);
        return Ok(record);
    }
    println!(
        "best module per class among {} models on {} ({} selection images, {} test images)",
        models.len(),
        task.specs[0],
        sets.selection.len(),
        sets.test.len()
    );
    println!("{:<14} {:>6} {:>8}", "class", "model", "F1");
    for c in 0..n {
        println!(
            "{:<14} {:>6} {:>8}",
            names[c],
            chosen[c],
            pct(metrics[chosen[c] * n + c].f1)
        );
    }
    for (i, acc) in model_acc.iter().enumerate() {
        println!("model {i} {:<40} {}", a.models[i].display(), pct(*acc));
    }
    println!(
        "best model {}  mean {}  ensemble (mean softmax) {}  composed {} ({:+.2} pp over the best)",
        pct(best),
        pct(mean),
        pct(ensemble),
        pct(composed.accuracy),
        100.0 * (composed.accuracy - best)
    );
    if let Some(out) = &a.out {
        println!("wrote the composed model to {}", out.display());
    }
    Ok(record)
}

/// Parse `CLASS=MODULE_DIR`.
fn parse_module_arg(s: &str) -> Result<(String, PathBuf)> {
    match s.split_once('=') {
        Some((name, dir)) if !name.is_empty() && !dir.is_empty() => {
            Ok((name.to_string(), PathBuf::from(dir)))
        }
        _ => bail!("--module {s:?}: expected CLASSNAME=MODULE_DIR"),
    }
}

/// A copy of `spec` with `classes` outputs (its last linear layer resized).
fn with_classes(spec: &cnn_models::ModelSpec, classes: usize) -> Result<cnn_models::ModelSpec> {
    let mut s = spec.clone();
    s.num_classes = classes;
    let last = s
        .layers
        .iter_mut()
        .rev()
        .find_map(|l| match l {
            cnn_models::LayerSpec::Linear(lin) => Some(lin),
            _ => None,
        })
        .with_context(|| format!("architecture {} ends in no linear layer", spec.name))?;
    last.out_features = classes;
    s.analyse()?;
    Ok(s)
}

/// `reuse new-task`: run it, print the table, return the record.
pub fn new_task(g: &Global, a: &ReuseNewTaskArgs) -> Result<serde_json::Value> {
    check_fraction(a.selection_fraction)?;
    let dev = device(g.device)?;
    let mut task_names: Vec<String> = Vec::new();
    let mut offered: Vec<(String, PathBuf, Module)> = Vec::new();
    for s in &a.modules {
        let (name, dir) = parse_module_arg(s)?;
        let mut loaded = load_modules(std::slice::from_ref(&dir), None, g)?;
        if loaded.len() != 1 {
            bail!(
                "--module {s}: {} holds {} modules; name one module directory per class",
                dir.display(),
                loaded.len()
            );
        }
        if !task_names.contains(&name) {
            task_names.push(name.clone());
        }
        offered.push((name, cnn_models::module::module_dir(&dir), loaded.remove(0)));
    }
    if task_names.len() < 2 {
        bail!("a task needs at least 2 classes, got {}", task_names.len());
    }
    let pairs: Vec<(PathBuf, Module)> = offered
        .iter()
        .map(|(_, d, m)| (d.clone(), m.clone()))
        .collect();
    check_method(&pairs)?;
    let metas: Vec<(PathBuf, &cnn_models::ModuleMeta)> = offered
        .iter()
        .map(|(_, d, m)| (d.clone(), &m.meta))
        .collect();
    check_composable(&metas)?;
    let task = TaskData::load(&a.datasets)?;
    // where each task class's images come from; every candidate of a class must agree
    let mut sources: Vec<Option<(ClassSource, String)>> = vec![None; task_names.len()];
    for (name, dir, m) in &offered {
        let t = task_names.iter().position(|n| n == name).unwrap_or(0);
        let what = format!("--module {name}={}", dir.display());
        let src = task.source_of(&m.meta.class_name, m.meta.dataset.as_deref(), &what)?;
        let desc = format!("{}/{}", task.specs[src.dataset].kind, m.meta.class_name);
        match &sources[t] {
            Some((s, d)) if *s != src => bail!(
                "task class {name:?}: its modules recognise different classes ({d} and {desc})"
            ),
            _ => sources[t] = Some((src, desc)),
        }
    }
    let sources: Vec<(ClassSource, String)> = sources.into_iter().flatten().collect();
    for (i, (s, d)) in sources.iter().enumerate() {
        if let Some(j) = sources[..i].iter().position(|(o, _)| o == s) {
            bail!(
                "task classes {:?} and {:?} are both {d}",
                task_names[j],
                task_names[i]
            );
        }
    }
    let class_sources: Vec<ClassSource> = sources.iter().map(|(s, _)| *s).collect();
    let sets = task.task_sets(&class_sources, &task_names, a.selection_fraction)?;
    let started = Instant::now();
    let modules: Vec<Module> = offered.iter().map(|(_, _, m)| m.clone()).collect();
    let task_labels: Vec<u32> = offered
        .iter()
        .map(|(n, _, _)| task_names.iter().position(|t| t == n).unwrap_or(0) as u32)
        .collect();
    let metrics = selection_metrics(&modules, &task_labels, &sets.selection, a.batch_size)?;
    let mut chosen = Vec::new();
    for t in 0..task_names.len() {
        let cands: Vec<usize> = (0..offered.len())
            .filter(|&j| task_labels[j] == t as u32)
            .collect();
        let column: Vec<ClassMetrics> = cands.iter().map(|&j| metrics[j]).collect();
        chosen.push(cands[best_by_f1(&column).unwrap_or(0)]);
    }
    let chosen_modules: Vec<Module> = chosen.iter().map(|&j| modules[j].clone()).collect();
    let composed = evaluate_composed(&chosen_modules, &sets.test, a.batch_size)?;
    let compose_seconds = started.elapsed().as_secs_f64();
    let scratch = if a.scratch_epochs > 0 {
        Some(train_scratch(g, a, &chosen_modules[0], &sets, &dev)?)
    } else {
        None
    };
    let classes: Vec<ComposedClass> = chosen
        .iter()
        .enumerate()
        .map(|(t, &j)| {
            let (name, dir, m) = &offered[j];
            ComposedClass::from_module(t as u32, name, dir, &m.meta)
        })
        .collect();
    let record = json!({
        "scenario": "new-task", "datasets": task.specs.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        "class_names": task_names,
        "class_sources": sources.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>(),
        "chosen_modules": chosen.iter().map(|&j| offered[j].1.clone()).collect::<Vec<_>>(),
        "selection_f1": chosen.iter().map(|&j| metrics[j].f1).collect::<Vec<_>>(),
        "candidates": offered.iter().zip(&metrics).map(|((name, dir, _), m)| json!({
            "class": name, "module": dir, "f1": m.f1, "precision": m.precision, "recall": m.recall,
        })).collect::<Vec<_>>(),
        "composed_accuracy": composed.accuracy, "composed": composed,
        "compose_seconds": compose_seconds,
        "scratch_accuracy": scratch.as_ref().map(|s| s["test_accuracy"].clone()),
        "scratch": scratch,
        "selection_images": sets.selection.len(), "test_images": sets.test.len(),
        "selection_fraction": a.selection_fraction, "out": a.out,
    });
    save_composition(
        a.out.as_ref(),
        "new-task",
        classes,
        a.datasets.clone(),
        a.selection_fraction,
        &record,
    )?;
    if g.json {
        print_json(&record);
        return Ok(record);
    }
    println!(
        "new task of {} classes from {} ({} selection images, {} test images)",
        task_names.len(),
        record["datasets"]
            .as_array()
            .map(|d| d
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(" + "))
            .unwrap_or_default(),
        sets.selection.len(),
        sets.test.len()
    );
    println!("{:<14} {:<28} {:>8}  module", "class", "source", "F1");
    for (t, &j) in chosen.iter().enumerate() {
        println!(
            "{:<14} {:<28} {:>8}  {}",
            task_names[t],
            sources[t].1,
            pct(metrics[j].f1),
            module_label(&offered[j].1, &offered[j].2)
        );
    }
    print_evaluation(&composed, &task_names);
    match &scratch {
        Some(s) => {
            let acc = s["test_accuracy"].as_f64().unwrap_or(0.0);
            println!(
                "composed {} (no training, {compose_seconds:.1}s) vs trained from scratch {} ({:.0}s): {:+.2} pp",
                pct(composed.accuracy),
                pct(acc),
                s["seconds"].as_f64().unwrap_or(0.0),
                100.0 * (composed.accuracy - acc)
            );
        }
        None => println!("composed accuracy {} (no training)", pct(composed.accuracy)),
    }
    if let Some(out) = &a.out {
        println!("wrote the composed model to {}", out.display());
    }
    Ok(record)
}

/// The from-scratch baseline: the first chosen module's parent architecture with the task's
/// class count, trained on the task's training images (first 80 % train, rest val, by index).
fn train_scratch(
    g: &Global,
    a: &ReuseNewTaskArgs,
    module: &Module,
    sets: &TaskSets,
    dev: &candle_core::Device,
) -> Result<serde_json::Value> {
    let spec = with_classes(&module.meta.parent_spec, sets.test.num_classes())?;
    let format = module.meta.input_format.clone();
    let n = sets.train.len();
    let cut = (0.8 * n as f64).floor() as usize;
    let tdata = cnn_models::TrainData {
        set: &sets.train,
        train: (0..cut).collect(),
        val: (cut..n).collect(),
        format: format.clone(),
    };
    let cfg = TrainConfig {
        epochs: a.scratch_epochs,
        batch_size: a.scratch_batch_size,
        lr: a.scratch_lr,
        momentum: 0.9,
        weight_decay: 1e-4,
        lr_milestones: vec![],
        lr_gamma: 0.1,
        augment: None,
        seed: a.seed,
        eval_batch: a.batch_size,
    };
    let mut model = Model::init(spec.clone(), a.seed, dev)?;
    model.set_ops(ops_for(g, dev));
    if !g.quiet {
        eprintln!(
            "training {} from scratch on the task: {} train / {} val images, {} epochs",
            spec.name,
            cut,
            n - cut,
            a.scratch_epochs
        );
    }
    let mut progress = TrainProgress::new(g.quiet);
    let started = Instant::now();
    let report = cnn_models::train(
        &mut model,
        &tdata,
        &cfg,
        cnn_models::Checkpointing::Off,
        &mut |e| progress.event(e),
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let idx: Vec<usize> = (0..sets.test.len()).collect();
    let test = cnn_models::evaluate(&model, &sets.test, &idx, &format, a.batch_size)?;
    Ok(json!({
        "arch": spec.name, "epochs": a.scratch_epochs, "best_epoch": report.best_epoch,
        "val_accuracy": report.best_val_accuracy, "test_accuracy": test.accuracy, "evaluation": test,
        "train_images": cut, "val_images": n - cut, "seconds": seconds, "config": cfg,
    }))
}

/// Load a composed-model directory with the CLI's device and ops choice.
pub fn load(g: &Global, dir: &Path) -> Result<ComposedModel> {
    let dev = device(g.device)?;
    let mut c = load_composed(dir, &dev)?;
    let ops = ops_for(g, &dev);
    for m in &mut c.modules {
        m.model.set_ops(ops);
    }
    Ok(c)
}

/// The task sets of a composed model, on its manifest's datasets (or `dataset` instead).
fn composed_sets(c: &ComposedModel, dataset: Option<&String>) -> Result<TaskSets> {
    let datasets = match dataset {
        Some(d) => vec![d.clone()],
        None => c.manifest.datasets.clone(),
    };
    let task = TaskData::load(&datasets)?;
    let mut sources = Vec::new();
    for (class, m) in c.manifest.classes.iter().zip(&c.modules) {
        let what = format!("class {:?} of the composed model", class.name);
        sources.push(task.source_of(&m.meta.class_name, class.source_dataset.as_deref(), &what)?);
    }
    task.task_sets(&sources, &c.class_names(), c.manifest.selection_fraction)
}

/// `eval` of a composed model: the test part (after the selection part), the selection part
/// (`--split val`), or the training images (`--split train`).
pub fn eval_composed(g: &Global, a: &EvalArgs) -> Result<()> {
    let c = load(g, &a.model)?;
    let sets = composed_sets(&c, a.dataset.as_ref())?;
    let set = match a.split {
        SplitChoice::Test => &sets.test,
        SplitChoice::Val => &sets.selection,
        SplitChoice::Train => &sets.train,
    };
    if set.is_empty() {
        bail!(
            "{}: the {:?} part of the composed model's task is empty",
            a.model.display(),
            a.split
        );
    }
    let ev = evaluate_composed(&c.modules, set, a.batch_size)?;
    let names = c.class_names();
    if g.json {
        print_json(
            &json!({"model": a.model, "composed": true, "kind": c.manifest.kind,
            "datasets": c.manifest.datasets, "split": format!("{:?}", a.split).to_lowercase(),
            "class_names": names, "evaluation": ev}),
        );
    } else {
        println!(
            "composed model ({}, {} modules) on the {} part of {}",
            c.manifest.kind,
            c.modules.len(),
            format!("{:?}", a.split).to_lowercase(),
            c.manifest.datasets.join(" + ")
        );
        print_evaluation(&ev, &names);
    }
    Ok(())
}

/// `predict` with a composed model: writes the module scores `[N, classes]` as `scores`.
pub fn predict_composed(g: &Global, a: &PredictArgs) -> Result<()> {
    let c = load(g, &a.model)?;
    let k = c.num_classes();
    let scores = match crate::commands::read_predict_input(&a.input)? {
        crate::commands::PredictInput::Images(set) => {
            let idx: Vec<usize> = (0..set.len()).collect();
            score_images(&c.modules, &set, &idx, a.batch_size)
                .with_context(|| a.input.display().to_string())?
        }
        crate::commands::PredictInput::Normalised(x) => {
            let spec = c.modules[0].model.spec();
            crate::commands::check_input_shape(&x, spec, &a.input)?;
            c.scores(&x, a.batch_size)
                .with_context(|| a.input.display().to_string())?
        }
    };
    let preds = argmax_rows(&scores, k);
    let rows = preds.len();
    let t = candle_core::Tensor::from_vec(scores, (rows, k), &candle_core::Device::Cpu)?;
    let mut map = std::collections::BTreeMap::new();
    map.insert("scores".to_string(), t);
    let bytes = cnn_models::weights::safetensors_bytes(&map, &[])?;
    cnn_models::files::atomic_write(&a.output, &bytes)?;
    let names = c.class_names();
    if g.json {
        let classes: Vec<&str> = preds.iter().map(|&p| names[p as usize].as_str()).collect();
        print_json(
            &json!({"output": a.output, "images": rows, "predicted": preds,
            "predicted_names": classes, "composed": true}),
        );
    } else {
        println!(
            "wrote composed scores of {rows} images to {}",
            a.output.display()
        );
    }
    Ok(())
}

/// `inspect` of a composed model: its classes, where each module comes from, and sizes.
pub fn inspect_composed(g: &Global, dir: &Path) -> Result<()> {
    let c = load(g, dir)?;
    let params: u64 = c.modules.iter().map(|m| m.meta.params).sum();
    let macs: u64 = c.modules.iter().map(|m| m.meta.macs).sum();
    if g.json {
        print_json(
            &json!({"composed": dir, "manifest": c.manifest, "params": params, "macs": macs,
            "modules": c.modules.iter().map(|m| json!({"class": m.meta.class_name, "kernels": m.meta.kernels,
                "krr": m.meta.krr, "params": m.meta.params, "macs": m.meta.macs})).collect::<Vec<_>>()}),
        );
        return Ok(());
    }
    println!(
        "composed model ({}) of {} modules, datasets {}",
        c.manifest.kind,
        c.modules.len(),
        c.manifest.datasets.join(" + ")
    );
    println!(
        "{:>5} {:<14} {:<14} {:>8} {:>8} {:>10}  from",
        "label", "class", "source class", "kernels", "KRR", "params"
    );
    for (class, m) in c.manifest.classes.iter().zip(&c.modules) {
        println!(
            "{:>5} {:<14} {:<14} {:>8} {:>8} {:>10}  {}",
            class.label,
            class.name,
            class.source_class,
            m.meta.kernels,
            pct(m.meta.krr),
            m.meta.params,
            class.source_dir.display()
        );
    }
    println!("modules together: {params} parameters, {macs} MACs per image");
    Ok(())
}
