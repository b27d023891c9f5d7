//! `eval`: a model, patched model or composed model on a dataset split.

use anyhow::{anyhow, bail, Context, Result};
use cnn_data::ImageSet;
use cnn_models::train::DataSplit;
use composer::reuse::evaluate_composition;
use composer::{Artifact, ComposedModel, PatchedModel};
use serde_json::json;

use crate::args::*;
use crate::output::{print_evaluation, print_json};
use crate::setup::{
    check_classes, composed_sets, load_data, not_a_model, open_runnable, recorded_split,
};

/// `cnnsplit eval`: evaluate whatever runnable artefact the directory holds on a split.
pub fn eval(g: &Global, a: EvalArgs) -> Result<()> {
    let (model, meta) = match open_runnable(g, &a.model)?.0 {
        Artifact::Patched(p) => return eval_patched(g, &a, &p),
        Artifact::Composed(c) => return eval_composed(g, &a, &c),
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

/// `eval` of a patched-model directory: the patched predictions on a split.
pub fn eval_patched(g: &Global, a: &EvalArgs, p: &PatchedModel) -> Result<()> {
    let dataset = a.dataset.clone().unwrap_or_else(|| p.meta.dataset.clone());
    let (dspec, data) = load_data(&dataset)?;
    let n = p.model.spec().num_classes;
    if data.test.num_classes() != n {
        bail!(
            "{}: the patched model has {n} classes, dataset `{dspec}` has {}",
            a.model.display(),
            data.test.num_classes()
        );
    }
    let (set, indices): (&ImageSet, Vec<usize>) = match a.split {
        SplitChoice::Test => (&data.test, (0..data.test.len()).collect()),
        SplitChoice::Val | SplitChoice::Train => {
            let split = recorded_split(&p.meta).ok_or_else(|| {
                anyhow!(
                    "{}: model.json records no training split",
                    a.model.display()
                )
            })?;
            let (tr, va) = split.indices(&data.train, p.meta.seed.unwrap_or(0))?;
            (
                &data.train,
                if a.split == SplitChoice::Val { va } else { tr },
            )
        }
    };
    let ev = p.evaluate(set, &indices, a.batch_size)?;
    if g.json {
        print_json(
            &serde_json::json!({"model": a.model, "patched": true, "dataset": dspec.to_string(),
            "split": format!("{:?}", a.split).to_lowercase(), "class_names": p.meta.class_names,
            "evaluation": ev}),
        );
    } else {
        println!(
            "patched model (class `{}` from module {})",
            p.manifest.target_class, p.module.meta.class_name
        );
        print_evaluation(&ev, &p.meta.class_names);
    }
    Ok(())
}

/// `eval` of a composed model: the test part (after the selection part), the selection part
/// (`--split val`), or the training images (`--split train`).
pub fn eval_composed(g: &Global, a: &EvalArgs, c: &ComposedModel) -> Result<()> {
    let sets = composed_sets(c, a.dataset.as_ref())?;
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
    let ev = evaluate_composition(&c.modules, set, a.batch_size)?;
    let names = c.class_names();
    if g.json {
        print_json(
            &serde_json::json!({"model": a.model, "composed": true, "kind": c.manifest.kind,
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
