//! `inspect`: the layers and costs of an architecture or model, a class module, or a composed model.

use std::path::Path;

use anyhow::{bail, Result};
use cnn_models::module::{module_dir, read_module_meta};
use cnn_models::{presets, ModelSpec};
use composer::{Artifact, ArtifactKind, ComposedModel};
use serde_json::json;

use crate::args::*;
use crate::output::{pct, print_json};
use crate::setup::open_runnable;

/// `cnnsplit inspect`: layers and costs of a model, an architecture, a module or a composition.
pub fn inspect(g: &Global, a: InspectArgs) -> Result<()> {
    if let Some(module) = &a.module {
        return inspect_module(g, module);
    }
    if let Some(m) = a
        .model
        .as_ref()
        .filter(|m| ArtifactKind::of(m) == Some(ArtifactKind::Composed))
    {
        if let (Artifact::Composed(c), _) = open_runnable(g, m)? {
            return inspect_composed(g, m, &c);
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
    let name_width = an
        .rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    println!(
        "{:<14} {:<name_width$} {:<32} {:>14} {:>12} {:>14}",
        "layer", "name", "op", "output", "params", "MACs"
    );
    for r in &an.rows {
        println!(
            "{:<14} {:<name_width$} {:<32} {:>14} {:>12} {:>14}",
            r.path, r.name, r.description, r.output, r.params, r.macs
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

/// `inspect --module`: a class module's kept kernels per conv, its costs and calibration.
pub fn inspect_module(g: &Global, path: &Path) -> Result<()> {
    let dir = module_dir(path);
    let meta = read_module_meta(&dir.join("module.json"))?;
    if g.json {
        print_json(&serde_json::to_value(&meta)?);
        return Ok(());
    }
    println!(
        "module for class {} `{}` ({} method), parent {}",
        meta.class_index,
        meta.class_name,
        meta.method,
        &meta.parent_sha256[..meta.parent_sha256.len().min(16)]
    );
    let an = meta.parent_spec.analyse()?;
    println!("{:<12} {:>10} {:>10}", "conv", "kept", "of");
    for (c, kept) in an.convs.iter().zip(&meta.retained) {
        let mark = if meta.zeroed_convs.contains(&c.index) {
            " (empty: one zero channel)"
        } else {
            ""
        };
        println!(
            "{:<12} {:>10} {:>10}{mark}",
            c.name,
            kept.len(),
            c.out_channels
        );
    }
    println!(
        "kernels {} of {} (KRR {}), {} parameters, {} MACs per image ({} of the parent's{})",
        meta.kernels,
        meta.total_kernels,
        pct(meta.krr),
        meta.params,
        meta.macs,
        pct(meta.overhead),
        if meta.head_included {
            ", head included"
        } else {
            "; scored by its class's logit"
        }
    );
    if let Some((lo, hi)) = meta.calibration {
        println!("calibration range on its class's validation images: [{lo:.4}, {hi:.4}]");
    }
    Ok(())
}

/// `inspect` of a composed model: its classes, where each module comes from, and sizes.
pub fn inspect_composed(g: &Global, dir: &Path, c: &ComposedModel) -> Result<()> {
    let params: u64 = c.modules.iter().map(|m| m.meta.params).sum();
    let macs: u64 = c.modules.iter().map(|m| m.meta.macs).sum();
    if g.json {
        print_json(
            &serde_json::json!({"composed": dir, "manifest": c.manifest, "params": params, "macs": macs,
            "modules": c.modules.iter().map(|m| serde_json::json!({"class": m.meta.class_name, "kernels": m.meta.kernels,
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
