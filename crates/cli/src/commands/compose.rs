//! `compose`: class modules composed into one classifier and scored on a test split.

use anyhow::{bail, Result};
use cnn_models::metrics::{argmax_rows, Evaluation};
use serde_json::json;

use crate::args::*;
use crate::output::{pct, print_evaluation, print_json};
use crate::setup::{device, load_data, load_modules};

/// `cnnsplit compose`: load the modules, score the test split, print or emit JSON.
pub fn compose(g: &Global, a: ComposeArgs) -> Result<()> {
    let parent = match &a.model {
        Some(p) => Some(cnn_models::load_model(p, &device(g.device)?)?),
        None => None,
    };
    let modules = load_modules(
        &a.modules,
        parent.as_ref().map(|(_, m)| m.weights_sha256.as_str()),
        g,
    )?;
    let (dspec, data) = load_data(&a.dataset)?;
    let n = modules.len();
    // labels: module j recognises class name j; map dataset labels to module positions
    let names: Vec<&str> = modules.iter().map(|m| m.meta.class_name.as_str()).collect();
    let mut indices = Vec::new();
    let mut labels = Vec::new();
    for i in 0..data.test.len() {
        let class = &data.test.class_names[data.test.labels[i] as usize];
        if let Some(pos) = names.iter().position(|n| *n == class) {
            indices.push(i);
            labels.push(pos as u32);
        }
    }
    if indices.is_empty() {
        bail!(
            "dataset {dspec} has no test image of the modules' classes ({})",
            names.join(", ")
        );
    }
    let scores = composer::score_images(&modules, &data.test, &indices, a.batch_size)?;
    let preds = argmax_rows(&scores, n);
    let ev = Evaluation::new(&labels, &preds, n);
    let params: u64 = modules.iter().map(|m| m.meta.params).sum();
    let macs: u64 = modules.iter().map(|m| m.meta.macs).sum();
    let model_eval = match &parent {
        Some((model, meta)) => Some(cnn_models::evaluate(
            model,
            &data.test,
            &indices,
            &meta.input_format,
            a.batch_size,
        )?),
        None => None,
    };
    let parent_params = parent.as_ref().map(|(m, _)| m.analysis().params());
    let parent_macs = parent.as_ref().map(|(m, _)| m.analysis().macs());
    let names_owned: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    if g.json {
        print_json(&json!({
            "modules": n, "class_names": names_owned, "dataset": dspec.to_string(), "composed": ev,
            "model_accuracy": model_eval.as_ref().map(|e| e.accuracy), "params": params, "macs": macs,
            "model_params": parent_params, "model_macs": parent_macs,
            "collapsed_modules": composer::collapsed_modules_json(&modules),
        }));
        return Ok(());
    }
    println!("composition of {n} modules on the test split of {dspec}");
    for m in modules.iter().filter(|m| !m.meta.collapsed.is_empty()) {
        println!(
            "COLLAPSED module of class {}: {}",
            m.meta.class_name,
            cnn_models::decomposition::describe_collapse(&m.meta.collapsed)
        );
    }
    print_evaluation(&ev, &names_owned);
    if let Some(me) = model_eval {
        println!(
            "model accuracy {} → composed {} ({:+.2} pp)",
            pct(me.accuracy),
            pct(ev.accuracy),
            100.0 * (ev.accuracy - me.accuracy)
        );
    }
    match (parent_params, parent_macs) {
        (Some(pp), Some(pm)) => println!(
            "modules together: {params} parameters ({} of the model's), {macs} MACs per image ({} of the model's)",
            pct(params as f64 / pp as f64),
            pct(macs as f64 / pm as f64)
        ),
        _ => println!("modules together: {params} parameters, {macs} MACs per image"),
    }
    Ok(())
}
