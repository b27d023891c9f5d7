//! `patch`: arguments in, [`composer::PatchJob`] patches and measures, tables and JSON out.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use cnn_models::module::{load_module, module_dir};
use composer::{is_patched, CalibrationKind, ComposerError, PatchConfig, PatchJob, PatchReport};

use crate::args::*;
use crate::flag_hint::with_flag_hint;
use crate::output::{pct, print_json};
use crate::setup::{device, load_data, ops_for};

/// `cnnsplit patch`: patch a weak model with a module and report the change.
pub fn patch(g: &Global, a: PatchArgs) -> Result<()> {
    let inputs = PatchInputs {
        model: &a.model,
        module: &a.module,
        dataset: a.dataset.as_deref(),
        out: a.out.as_deref(),
    };
    let calibration = match a.calibration {
        CalibrationChoice::Minmax => CalibrationKind::MinMax,
        CalibrationChoice::None => CalibrationKind::Raw,
        CalibrationChoice::Percentile => match a.percentiles[..] {
            [lo, hi] if (0.0..=100.0).contains(&lo) && (0.0..=100.0).contains(&hi) && lo < hi => {
                CalibrationKind::Percentile { lo, hi }
            }
            _ => bail!(
                "--percentiles must be LO,HI with 0 ≤ LO < HI ≤ 100, got {:?}",
                a.percentiles
            ),
        },
    };
    let cfg = PatchConfig {
        target: a.target.clone(),
        calibration,
        clip: a.clip,
        force: a.force,
        batch_size: a.batch_size,
    };
    let (report, summary) = patch_model(g, &inputs, &cfg)?;
    if g.json {
        print_json(&summary);
        return Ok(());
    }
    print_patch_report(
        &report,
        summary["target_class"].as_str().unwrap_or(""),
        summary["dataset"].as_str().unwrap_or(""),
    );
    println!(
        "patch cost: the module adds {} MACs per image ({} of the weak model's)",
        summary["module_macs"],
        pct(summary["mac_overhead"].as_f64().unwrap_or(0.0))
    );
    println!("calibration: {calibration}");
    if summary["forced"].as_bool() == Some(true) {
        println!(
            "COLLAPSED module patched because of --force: {}",
            collapse_line(&summary["module_collapsed"])
        );
    }
    if let Some(out) = &a.out {
        println!("wrote the patched model to {}", out.display());
    }
    Ok(())
}

/// The `reason`s of a JSON list of collapse reasons, `; `-separated.
fn collapse_line(reasons: &serde_json::Value) -> String {
    serde_json::from_value::<Vec<cnn_models::module::Collapse>>(reasons.clone())
        .map(|r| cnn_models::decomposition::describe_collapse(&r))
        .unwrap_or_default()
}

/// The files a patch reads and writes.
pub struct PatchInputs<'a> {
    /// The weak model's directory.
    pub model: &'a Path,
    /// The module's directory.
    pub module: &'a Path,
    /// The dataset to measure on (default: the weak model's).
    pub dataset: Option<&'a str>,
    /// Where to save the patched model, if anywhere.
    pub out: Option<&'a Path>,
}

/// Patch a weak model with a module, evaluate on the test split, optionally save the patched
/// model; returns the report and a JSON summary.
pub fn patch_model(
    g: &Global,
    a: &PatchInputs<'_>,
    cfg: &PatchConfig,
) -> Result<(PatchReport, serde_json::Value)> {
    if let Some(out) = a.out.filter(|o| is_patched(o)) {
        return Err(with_flag_hint(ComposerError::AlreadyPatched {
            dir: out.to_path_buf(),
        }));
    }
    if let Some(out) = a.out {
        // temp files of a patch that was killed mid-write are never read; clear them away
        cnn_models::files::remove_stale_temp_files(out, 1)?;
    }
    let dev = device(g.device)?;
    let (mut model, meta) = cnn_models::load_model(a.model, &dev)?;
    let mdir = module_dir(a.module);
    let mut module = load_module(&mdir, None, &dev)?;
    let ops = ops_for(g, &dev);
    model.set_ops(ops);
    module.model.set_ops(ops);
    let job =
        PatchJob::new(a.model, (&model, &meta), &mdir, &module, cfg).map_err(|e| match e {
            e @ ComposerError::DifferentInputs { .. } => {
                anyhow!("{} and {}: {e}", a.model.display(), mdir.display())
            }
            e => with_flag_hint(e),
        })?;
    let dataset = a
        .dataset
        .map_or_else(|| meta.dataset.clone(), str::to_string);
    let (dspec, data) = load_data(&dataset)?;
    let mut summary = job.measure(&dspec.to_string(), &data.test, cfg.batch_size)?;
    if let Some(out) = a.out {
        job.save(out).map_err(with_flag_hint)?;
        summary.out = Some(out.to_path_buf());
    }
    Ok((summary.report.clone(), serde_json::to_value(&summary)?))
}

/// Print a patch report as a before/after table.
pub fn print_patch_report(r: &PatchReport, class: &str, dataset: &str) {
    println!(
        "patching class `{class}` on the test split of {dataset} ({} images, {} of the class)",
        r.images, r.target_images
    );
    println!("{:<22} {:>9} {:>9} {:>10}", "", "before", "after", "change");
    for (name, m) in [
        ("target precision", &r.precision),
        ("target recall", &r.recall),
        ("target F1", &r.f1),
        ("other-class accuracy", &r.non_target_accuracy),
    ] {
        println!(
            "{name:<22} {:>9} {:>9} {:>+9.2}pp",
            pct(m.before),
            pct(m.after),
            m.delta_pp
        );
    }
}
