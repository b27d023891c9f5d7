//! SVG plots of the reproduction, drawn with `plotters`.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use super::report::Series;

const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing a plot: {e}")
}

/// Grouped bars: one group per category, one bar per series; values in percent.
fn bars(
    path: &Path,
    title: &str,
    categories: &[String],
    series: &[(String, Vec<f64>)],
    y_label: &str,
) -> Result<()> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let n = categories.len().max(1);
        let k = series.len().max(1);
        let top = series
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .fold(0.0f64, f64::max)
            .max(1.0)
            * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(60)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..n as f64, 0f64..top)
            .map_err(err)?;
        let names = categories.to_vec();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - i as f64 - 0.5).abs() < 0.26 {
                    names.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc(y_label)
            .draw()
            .map_err(err)?;
        for (j, (name, values)) in series.iter().enumerate() {
            let colour = COLOURS[j % COLOURS.len()];
            let width = 0.8 / k as f64;
            chart
                .draw_series(values.iter().enumerate().map(|(i, &v)| {
                    let x0 = i as f64 + 0.1 + j as f64 * width;
                    Rectangle::new([(x0, 0.0), (x0 + width, v)], colour.filled())
                }))
                .map_err(err)?
                .label(name.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled())
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    cnn_models::files::atomic_write(path, svg.as_bytes())?;
    Ok(())
}

/// Lines over a shared x axis; values in percent.
fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<()> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let pts = series.iter().flat_map(|(_, p)| p.iter().copied());
        let (x_lo, x_hi, y_lo, y_hi) = pts.fold(
            (f64::MAX, f64::MIN, f64::MAX, f64::MIN),
            |(a, b, c, d), (x, y)| (a.min(x), b.max(x), c.min(y), d.max(y)),
        );
        let (x_lo, x_hi) = if x_lo <= x_hi {
            (x_lo, x_hi.max(x_lo + 1.0))
        } else {
            (0.0, 1.0)
        };
        let (y_lo, y_hi) = if y_lo <= y_hi {
            (y_lo, y_hi)
        } else {
            (0.0, 100.0)
        };
        let pad = ((y_hi - y_lo) * 0.1).max(1.0);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(x_lo..x_hi, (y_lo - pad).max(0.0)..(y_hi + pad).min(105.0))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc("%")
            .draw()
            .map_err(err)?;
        for (j, (name, p)) in series.iter().enumerate() {
            let colour = COLOURS[j % COLOURS.len()];
            chart
                .draw_series(LineSeries::new(p.iter().copied(), colour.stroke_width(2)))
                .map_err(err)?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 14, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    cnn_models::files::atomic_write(path, svg.as_bytes())?;
    Ok(())
}

/// Draw the four plots of the report into `dir`.
pub fn draw_all(dir: &Path, s: &Series) -> Result<()> {
    let pct = |v: &[f64]| v.iter().map(|x| 100.0 * x).collect::<Vec<_>>();
    bars(
        &dir.join("krr_per_class.svg"),
        "Kernel retention per class (same model)",
        &s.classes,
        &[
            ("GradSplitter".into(), pct(&s.krr_grad)),
            ("CNNSplitter".into(), pct(&s.krr_ga)),
        ],
        "KRR %",
    )?;
    let mut gs = Vec::new();
    for (model, p) in &s.gs_epochs {
        gs.push((
            format!("{model} val acc"),
            p.iter().map(|&(e, a, _)| (e, 100.0 * a)).collect(),
        ));
        gs.push((
            format!("{model} KRR"),
            p.iter().map(|&(e, _, k)| (e, 100.0 * k)).collect(),
        ));
    }
    gs.truncate(4);
    lines(
        &dir.join("gs_epochs.svg"),
        "GradSplitter: composed val accuracy and mean KRR per epoch",
        "epoch",
        &gs,
    )?;
    lines(
        &dir.join("ga_generations.svg"),
        "CNNSplitter: composed fitness accuracy and mean best fitness per generation",
        "generation",
        &[
            (
                "composed accuracy".into(),
                s.ga_generations
                    .iter()
                    .map(|&(g, a, _)| (g, 100.0 * a))
                    .collect(),
            ),
            (
                "mean best fitness".into(),
                s.ga_generations
                    .iter()
                    .map(|&(g, _, f)| (g, 100.0 * f))
                    .collect(),
            ),
        ],
    )?;
    let mut patch = Vec::new();
    for (method, rows) in &s.patch_f1 {
        let mut before = vec![0.0; s.classes.len()];
        let mut after = vec![0.0; s.classes.len()];
        for &(c, b, a) in rows {
            if c < before.len() {
                before[c] = 100.0 * b;
                after[c] = 100.0 * a;
            }
        }
        if patch.is_empty() {
            patch.push(("F1 before".to_string(), before));
        }
        patch.push((format!("F1 after ({method})"), after));
    }
    bars(
        &dir.join("patch_f1.svg"),
        "Patching: target-class F1 before and after",
        &s.classes,
        &patch,
        "F1 %",
    )?;
    Ok(())
}
