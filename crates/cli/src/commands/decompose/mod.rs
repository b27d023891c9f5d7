//! `decompose`: flags into the chosen splitter's config (`grad` or `ga`), its progress onto the
//! terminal, the library's `decompose` and `Decomposition::save`, then the module table.

pub mod ga;
pub mod grad;
pub mod target;

use anyhow::{bail, Result};
use cnn_models::decomposition::{describe_collapse, ModuleSummary};

use crate::args::*;
use crate::output::{pct, print_json};
use grad::{decompose_grad, grad_config};
use target::DecomposeTarget;

/// `cnnsplit decompose`: run the chosen splitter, save the modules, print their table.
pub fn decompose(g: &Global, a: DecomposeArgs) -> Result<()> {
    if let Some(tolerance) = a.tolerance {
        if !(0.0..=1.0).contains(&tolerance) {
            bail!("--tolerance must be within [0, 1], got {tolerance}");
        }
    }
    let target = DecomposeTarget::of(&a);
    let (record, modules, chosen) = match a.method {
        Method::Grad => {
            let d = decompose_grad(g, &target, &grad_config(&a))?;
            let f = &d.record.method_fields;
            let metric = match f.selection_metric {
                splitter_grad::SelectionMetric::Accuracy => "accuracy",
                splitter_grad::SelectionMetric::BalancedAccuracy => "balanced accuracy",
            };
            let stopped = if f.stopped_early {
                format!(
                    ", stopped after {} epochs: the mean KRR stopped falling",
                    f.epochs_run
                )
            } else {
                String::new()
            };
            let chosen = format!("chosen epoch {} by {metric}{stopped}", f.chosen_epoch);
            (d.record.to_json_value()?, d.record.modules, chosen)
        }
        Method::Ga => {
            let d = ga::decompose_ga(g, &a)?;
            let ga = &d.record.method_fields;
            let mut chosen = format!(
                "chosen generation {}: composed accuracy {} on the fitness images",
                ga.chosen_generation,
                pct(ga.chosen_accuracy)
            );
            if let Some(h) = ga.chosen_holdout_accuracy {
                chosen += &format!(", {} on {} holdout images", pct(h), ga.holdout_images);
            }
            if ga.near_chance {
                chosen += &format!(
                    "; NEAR CHANCE (best {}), every module flagged collapsed",
                    pct(ga.peak_accuracy)
                );
            }
            (d.record.to_json_value()?, d.record.modules, chosen)
        }
    };
    if g.json {
        print_json(&record);
        return Ok(());
    }
    print_module_table(&modules);
    println!(
        "wrote {} modules to {} ({chosen})",
        modules.len(),
        a.out.display(),
    );
    let collapsed = modules.iter().filter(|m| !m.collapsed.is_empty()).count();
    if collapsed > 0 {
        println!(
            "{collapsed} of {} modules are COLLAPSED (design §13): `patch` refuses them without --force",
            modules.len()
        );
    }
    Ok(())
}

/// The table of modules `decompose` prints.
fn print_module_table(modules: &[ModuleSummary]) {
    println!(
        "{:<14} {:>8} {:>8} {:>10} {:>10}",
        "module", "kernels", "KRR", "params", "MAC share"
    );
    // kernels and params stand unpadded, as they always have
    for m in modules {
        let flag = if m.collapsed.is_empty() {
            String::new()
        } else {
            format!("  COLLAPSED: {}", describe_collapse(&m.collapsed))
        };
        println!(
            "{:<14} {} {:>8} {} {:>10}{flag}",
            m.name,
            m.kernels,
            pct(m.krr),
            m.params,
            pct(m.overhead)
        );
    }
}
