//! The paper's tables (design §10) from the step records, written as Markdown, CSV and JSON from
//! one [`Table`] each, so the three always agree.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;
use serde_json::Value;

use super::plan::{Preset, PresetConfig, Step, StepKind};

/// One table: a title, column names, rows of cells, and notes printed under it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Table {
    /// Short id (`t1` … `t8`), also the CSV file name.
    pub id: String,
    /// Title.
    pub title: String,
    /// Column names.
    pub columns: Vec<String>,
    /// Rows; each as long as `columns`.
    pub rows: Vec<Vec<Cell>>,
    /// Notes under the table (units, the paper's figures, deviations).
    pub notes: Vec<String>,
}

/// A table cell.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Cell {
    /// Text.
    Text(String),
    /// A number, printed with `digits` decimals.
    Number {
        /// The value.
        value: f64,
        /// Decimals in Markdown and CSV.
        #[serde(skip)]
        digits: usize,
    },
    /// No value.
    Empty,
}

impl Cell {
    fn render(&self) -> String {
        match self {
            Cell::Text(t) => t.clone(),
            Cell::Number { value, digits } => format!("{value:.*}", digits),
            Cell::Empty => String::new(),
        }
    }
}

fn t(s: impl Into<String>) -> Cell {
    Cell::Text(s.into())
}

fn num(v: Option<f64>, digits: usize) -> Cell {
    match v {
        Some(value) if value.is_finite() => Cell::Number { value, digits },
        _ => Cell::Empty,
    }
}

/// A percentage cell (value in [0, 1] shown ×100 with 2 decimals).
fn pc(v: Option<f64>) -> Cell {
    num(v.map(|x| 100.0 * x), 2)
}

impl Table {
    fn new(id: &str, title: &str, columns: &[&str]) -> Self {
        Table {
            id: id.into(),
            title: title.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Markdown: a heading, the table, the notes.
    pub fn markdown(&self) -> String {
        let mut s = format!("### {} — {}\n\n", self.id.to_uppercase(), self.title);
        let _ = writeln!(s, "| {} |", self.columns.join(" | "));
        let _ = writeln!(
            s,
            "|{}|",
            self.columns
                .iter()
                .map(|_| "---")
                .collect::<Vec<_>>()
                .join("|")
        );
        for r in &self.rows {
            let cells: Vec<String> = r.iter().map(|c| c.render().replace('|', "/")).collect();
            let _ = writeln!(s, "| {} |", cells.join(" | "));
        }
        for n in &self.notes {
            let _ = write!(s, "\n{n}\n");
        }
        s.push('\n');
        s
    }

    /// CSV with a header row; fields with commas or quotes are quoted.
    pub fn csv(&self) -> String {
        let field = |f: String| {
            if f.contains([',', '"', '\n']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f
            }
        };
        let mut s = String::new();
        let head: Vec<String> = self.columns.iter().cloned().map(field).collect();
        let _ = writeln!(s, "{}", head.join(","));
        for r in &self.rows {
            let cells: Vec<String> = r.iter().map(|c| field(c.render())).collect();
            let _ = writeln!(s, "{}", cells.join(","));
        }
        s
    }

    /// JSON: one object per row, keyed by column name (numbers unrounded).
    pub fn json_rows(&self) -> Value {
        Value::Array(
            self.rows
                .iter()
                .map(|r| {
                    let mut o = serde_json::Map::new();
                    for (c, cell) in self.columns.iter().zip(r) {
                        o.insert(
                            c.clone(),
                            match cell {
                                Cell::Text(s) => Value::String(s.clone()),
                                Cell::Number { value, .. } => serde_json::json!(value),
                                Cell::Empty => Value::Null,
                            },
                        );
                    }
                    Value::Object(o)
                })
                .collect(),
        )
    }
}

/// Everything the report and plots need, gathered from the records.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    /// The preset.
    pub preset: Preset,
    /// Its settings.
    pub config: PresetConfig,
    /// The tables T1–T8.
    pub tables: Vec<Table>,
    /// Series for the plots.
    pub series: Series,
    /// Total seconds of the recorded steps.
    pub seconds: f64,
    /// Steps recorded / planned.
    pub steps_done: usize,
    /// Steps planned.
    pub steps_planned: usize,
}

/// One GradSplitter epoch: (epoch, composed val accuracy, mean KRR).
pub type EpochPoint = (f64, f64, f64);
/// One patched class: (class index, F1 before, F1 after).
pub type PatchPoint = (usize, f64, f64);

/// Data series the plots draw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Series {
    /// Class names.
    pub classes: Vec<String>,
    /// KRR per class of the GradSplitter and CNNSplitter modules of the same model.
    pub krr_grad: Vec<f64>,
    /// KRR per class of the CNNSplitter modules.
    pub krr_ga: Vec<f64>,
    /// Per GradSplitter decomposition: (model, [(epoch, val accuracy, mean KRR)]).
    pub gs_epochs: Vec<(String, Vec<EpochPoint>)>,
    /// CNNSplitter: (generation, composed fitness accuracy, mean best fitness).
    pub ga_generations: Vec<(f64, f64, f64)>,
    /// Patching, per method: [(class, F1 before, F1 after)].
    pub patch_f1: Vec<(String, Vec<PatchPoint>)>,
}

fn f(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

fn sd(xs: &[f64]) -> Option<f64> {
    let m = mean(xs)?;
    (xs.len() > 1)
        .then(|| (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt())
}

fn module_column(record: &Value, key: &str) -> Vec<f64> {
    record["modules"]
        .as_array()
        .map(|m| m.iter().filter_map(|x| x[key].as_f64()).collect())
        .unwrap_or_default()
}

impl Results {
    /// Build the tables from `(step, output, seconds)` records.
    pub fn gather(
        preset: Preset,
        cfg: &PresetConfig,
        records: &[(Step, Value, f64)],
    ) -> Result<Self> {
        let find = |pred: &dyn Fn(&StepKind) -> bool| -> Vec<&(Step, Value, f64)> {
            records.iter().filter(|(s, _, _)| pred(&s.kind)).collect()
        };
        let mut tables = Vec::new();
        let mut series = Series {
            classes: cfg.class_names.clone(),
            ..Series::default()
        };

        // T1 models
        let mut t1 = Table::new(
            "t1",
            "Models",
            &[
                "model",
                "role",
                "arch",
                "dataset",
                "estimator seed",
                "train images",
                "val images",
                "epochs",
                "best epoch",
                "val acc %",
                "test acc %",
                "train s",
            ],
        );
        for (s, o, secs) in find(&|k| matches!(k, StepKind::Train { .. })) {
            if let StepKind::Train {
                role,
                arch,
                dataset,
                estimator,
            } = &s.kind
            {
                t1.rows.push(vec![
                    t(s.id.trim_start_matches("train-")),
                    t(role.as_str()),
                    t(arch.as_str()),
                    t(dataset.as_str()),
                    estimator.map_or(Cell::Empty, |e| t(e.to_string())),
                    num(f(&o["train_images"]), 0),
                    num(f(&o["val_images"]), 0),
                    num(o["epochs"].as_array().map(|e| e.len() as f64), 0),
                    num(f(&o["best_epoch"]), 0),
                    pc(f(&o["best_val_accuracy"])),
                    pc(f(&o["test_accuracy"])),
                    num(Some(*secs), 0),
                ]);
            }
        }
        t1.notes.push("Estimators train on the spec's Dirichlet class-imbalanced subsets (80 % train / 20 % val of the subset); test accuracy is on the full official test split.".into());
        tables.push(t1);

        // T2 modularisation
        let mut t2 = Table::new(
            "t2",
            "Modularisation effectiveness",
            &[
                "method",
                "model",
                "model acc %",
                "composed acc %",
                "loss pp",
                "mean KRR %",
                "mean kernels",
                "chosen epoch/gen",
                "search s",
            ],
        );
        let mut losses: Vec<(String, String, f64, f64)> = Vec::new(); // method, model, loss, kernels
        for (s, o, secs) in find(&|k| matches!(k, StepKind::Decompose { .. })) {
            let StepKind::Decompose { method, model } = &s.kind else {
                continue;
            };
            let compose = records.iter().find(|(c, _, _)| {
                matches!(&c.kind, StepKind::Compose { method: m2, model: md } if m2 == method && md == model)
            });
            let model_acc = compose.and_then(|(_, c, _)| f(&c["model_accuracy"]));
            let composed = compose.and_then(|(_, c, _)| f(&c["composed"]["accuracy"]));
            let loss = model_acc.zip(composed).map(|(m, c)| 100.0 * (m - c));
            let kernels = mean(&module_column(o, "kernels"));
            if let (Some(l), Some(k)) = (loss, kernels) {
                losses.push((method.clone(), model.clone(), l, k));
            }
            let chosen = if method == "grad" {
                &o["chosen_epoch"]
            } else {
                &o["chosen_generation"]
            };
            t2.rows.push(vec![
                t(if method == "grad" {
                    "GradSplitter"
                } else {
                    "CNNSplitter"
                }),
                t(model.as_str()),
                pc(model_acc),
                pc(composed),
                num(loss, 2),
                pc(mean(&module_column(o, "krr"))),
                num(kernels, 1),
                num(f(chosen), 0),
                num(f(&o["seconds"]).or(Some(*secs)), 0),
            ]);
            if method == "grad" {
                let pts: Vec<(f64, f64, f64)> = o["log"]
                    .as_array()
                    .map(|l| {
                        l.iter()
                            .filter_map(|r| {
                                Some((f(&r["epoch"])?, f(&r["val_accuracy"])?, f(&r["mean_krr"])?))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                series.gs_epochs.push((model.clone(), pts));
            } else {
                series.ga_generations = o["generations"]
                    .as_array()
                    .map(|g| {
                        g.iter()
                            .filter_map(|r| {
                                let best: Vec<f64> = r["best_fitness"]
                                    .as_array()?
                                    .iter()
                                    .filter_map(Value::as_f64)
                                    .collect();
                                Some((
                                    f(&r["generation"])?,
                                    f(&r["composed_accuracy"])?,
                                    mean(&best)?,
                                ))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
            }
        }
        let grad_losses: Vec<f64> = losses
            .iter()
            .filter(|l| l.0 == "grad")
            .map(|l| l.2)
            .collect();
        t2.notes.push(format!(
            "Loss = model − composed test accuracy. GradSplitter loss over its decompositions: mean {} pp, sd {} pp. The paper's third-party summary puts CNNSplitter's mean loss at 2.89 %.",
            mean(&grad_losses).map_or("–".into(), |m| format!("{m:.2}")),
            sd(&grad_losses).map_or("–".into(), |m| format!("{m:.2}")),
        ));
        tables.push(t2);

        // T3 GS vs GA on the same model
        let mut t3 = Table::new(
            "t3",
            "GradSplitter vs CNNSplitter",
            &[
                "model",
                "GS loss pp",
                "GS mean kernels",
                "GA loss pp",
                "GA mean kernels",
                "kernel reduction %",
                "paper reduction %",
            ],
        );
        for (_, model, ga_loss, ga_k) in losses.iter().filter(|l| l.0 == "ga") {
            if let Some((_, _, gs_loss, gs_k)) =
                losses.iter().find(|l| l.0 == "grad" && &l.1 == model)
            {
                t3.rows.push(vec![
                    t(model.as_str()),
                    num(Some(*gs_loss), 2),
                    num(Some(*gs_k), 1),
                    num(Some(*ga_loss), 2),
                    num(Some(*ga_k), 1),
                    num(Some(100.0 * (1.0 - gs_k / ga_k)), 2),
                    num(Some(19.88), 2),
                ]);
            }
        }
        t3.notes.push("Both methods decompose the same model here (the paper uses BN models for GradSplitter and no-BN models for CNNSplitter). Reduction = 1 − GS kernels / GA kernels.".into());
        tables.push(t3);
        // KRR per class of the GA model's two decompositions
        let decomposition_of = |method: &str, model: &str| {
            records.iter().find_map(|(s, o, _)| match &s.kind {
                StepKind::Decompose {
                    method: m,
                    model: md,
                } if m == method && md == model => Some(o),
                _ => None,
            })
        };
        let ga_model = records.iter().find_map(|(s, _, _)| match &s.kind {
            StepKind::Decompose { method, model } if method == "ga" => Some(model.clone()),
            _ => None,
        });
        if let Some(model) = ga_model {
            series.krr_ga = decomposition_of("ga", &model)
                .map(|o| module_column(o, "krr"))
                .unwrap_or_default();
            series.krr_grad = decomposition_of("grad", &model)
                .map(|o| module_column(o, "krr"))
                .unwrap_or_default();
        }

        // T4 per-module quality (module-selection part) and T5 same-task reuse
        let mut t4 = Table::new(
            "t4",
            "Per-module quality (module-selection images)",
            &[
                "selection",
                "model",
                "class",
                "precision %",
                "recall %",
                "F1 %",
                "KRR %",
            ],
        );
        let mut t5 = Table::new(
            "t5",
            "Same-task reuse",
            &[
                "scope",
                "models",
                "best model %",
                "mean model %",
                "ensemble %",
                "composed %",
                "gain over best pp",
                "chosen model per class",
            ],
        );
        for (s, o, _) in find(&|k| matches!(k, StepKind::Select { .. })) {
            let StepKind::Select { scope, models } = &s.kind else {
                continue;
            };
            for (i, model) in models.iter().enumerate() {
                let krr: Vec<f64> = decomposition_of("grad", model)
                    .map(|d| module_column(d, "krr"))
                    .unwrap_or_default();
                for (c, name) in cfg.class_names.iter().enumerate() {
                    let m = &o["selection_metrics"][i][c];
                    t4.rows.push(vec![
                        t(scope.as_str()),
                        t(model.as_str()),
                        t(name.as_str()),
                        pc(f(&m["precision"])),
                        pc(f(&m["recall"])),
                        pc(f(&m["f1"])),
                        pc(krr.get(c).copied()),
                    ]);
                }
            }
            let chosen: Vec<String> = o["chosen_model"]
                .as_array()
                .map(|c| c.iter().map(|v| v.to_string()).collect())
                .unwrap_or_default();
            t5.rows.push(vec![
                t(scope.as_str()),
                t(models.join(" + ")),
                pc(f(&o["best_model_accuracy"])),
                pc(f(&o["mean_model_accuracy"])),
                pc(f(&o["ensemble_accuracy"])),
                pc(f(&o["composed_accuracy"])),
                num(f(&o["gain_over_best"]).map(|g| 100.0 * g), 2),
                t(chosen.join(" ")),
            ]);
        }
        t4.notes.push("A module is a binary classifier (positive ⇔ score > 0.5) on the first 20 % of each class's test images.".into());
        t5.notes.push("Accuracies on the test part (the test split after the module-selection images). Ensemble = mean softmax of the models. Chosen model = index into the models column.".into());
        tables.push(t4);
        tables.push(t5);

        // T6 patching
        let mut t6 = Table::new(
            "t6",
            "Patching the weak model",
            &[
                "modules",
                "class",
                "P before %",
                "P after %",
                "ΔP pp",
                "R before %",
                "R after %",
                "ΔR pp",
                "F1 before %",
                "F1 after %",
                "ΔF1 pp",
                "non-target acc before %",
                "non-target acc after %",
                "MAC overhead %",
            ],
        );
        for method in ["grad", "ga"] {
            let label = if method == "grad" {
                "GradSplitter"
            } else {
                "CNNSplitter"
            };
            let mut deltas: [Vec<f64>; 4] = Default::default();
            let mut f1s = Vec::new();
            for (s, o, _) in
                find(&|k| matches!(k, StepKind::Patch { method: m, .. } if m == method))
            {
                let StepKind::Patch { class, .. } = &s.kind else {
                    continue;
                };
                let r = &o["report"];
                for (k, key) in ["precision", "recall", "f1", "non_target_accuracy"]
                    .iter()
                    .enumerate()
                {
                    if let Some(d) = f(&r[key]["delta_pp"]) {
                        deltas[k].push(d);
                    }
                }
                if let (Some(b), Some(a)) = (f(&r["f1"]["before"]), f(&r["f1"]["after"])) {
                    f1s.push((*class, b, a));
                }
                t6.rows.push(vec![
                    t(label),
                    t(o["target_class"].as_str().unwrap_or("")),
                    pc(f(&r["precision"]["before"])),
                    pc(f(&r["precision"]["after"])),
                    num(f(&r["precision"]["delta_pp"]), 2),
                    pc(f(&r["recall"]["before"])),
                    pc(f(&r["recall"]["after"])),
                    num(f(&r["recall"]["delta_pp"]), 2),
                    pc(f(&r["f1"]["before"])),
                    pc(f(&r["f1"]["after"])),
                    num(f(&r["f1"]["delta_pp"]), 2),
                    pc(f(&r["non_target_accuracy"]["before"])),
                    pc(f(&r["non_target_accuracy"]["after"])),
                    pc(f(&o["mac_overhead"])),
                ]);
            }
            if !f1s.is_empty() {
                let mut row = vec![t(label), t("mean")];
                row.extend([
                    Cell::Empty,
                    Cell::Empty,
                    num(mean(&deltas[0]), 2),
                    Cell::Empty,
                    Cell::Empty,
                    num(mean(&deltas[1]), 2),
                    Cell::Empty,
                    Cell::Empty,
                    num(mean(&deltas[2]), 2),
                    Cell::Empty,
                    Cell::Empty,
                    Cell::Empty,
                ]);
                t6.rows.push(row);
                series.patch_f1.push((label.into(), f1s));
            }
        }
        t6.rows.push(vec![
            t("paper: GradSplitter"),
            t("mean"),
            Cell::Empty,
            Cell::Empty,
            num(Some(17.13), 2),
            Cell::Empty,
            Cell::Empty,
            num(Some(4.95), 2),
            Cell::Empty,
            Cell::Empty,
            num(Some(11.47), 2),
            Cell::Empty,
            Cell::Empty,
            Cell::Empty,
        ]);
        t6.rows.push(vec![
            t("paper: CNNSplitter"),
            t("mean"),
            Cell::Empty,
            Cell::Empty,
            num(Some(12.54), 2),
            Cell::Empty,
            Cell::Empty,
            num(Some(2.14), 2),
            Cell::Empty,
            Cell::Empty,
            Cell::Empty,
            Cell::Empty,
            Cell::Empty,
            Cell::Empty,
        ]);
        t6.notes.push("One weak model (simcnn-weak, trained on few images) patched once per class with the first estimator's module of that class, min–max calibrated. Δ in percentage points; the paper's headlines (pp or relative not stated) below.".into());
        tables.push(t6);

        // T7 new task
        let mut t7 = Table::new(
            "t7",
            "New task by composition",
            &[
                "task",
                "classes",
                "sources",
                "composed acc %",
                "from-scratch acc %",
                "difference pp",
                "compose s",
                "scratch training s",
            ],
        );
        let mut diffs = Vec::new();
        for (s, o, _) in find(&|k| matches!(k, StepKind::NewTask { .. })) {
            let StepKind::NewTask { task } = &s.kind else {
                continue;
            };
            let join = |v: &Value| -> String {
                v.as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default()
            };
            let composed = f(&o["composed_accuracy"]);
            let scratch = f(&o["scratch_accuracy"]);
            let diff = composed.zip(scratch).map(|(c, s)| 100.0 * (c - s));
            diffs.extend(diff);
            t7.rows.push(vec![
                t(task.to_string()),
                t(join(&o["class_names"])),
                t(join(&o["class_sources"])),
                pc(composed),
                pc(scratch),
                num(diff, 2),
                num(f(&o["compose_seconds"]), 1),
                num(f(&o["scratch"]["seconds"]), 0),
            ]);
        }
        t7.rows.push(vec![
            t("mean"),
            Cell::Empty,
            Cell::Empty,
            Cell::Empty,
            Cell::Empty,
            num(mean(&diffs), 2),
            Cell::Empty,
            Cell::Empty,
        ]);
        t7.rows.push(vec![
            t("paper"),
            Cell::Empty,
            Cell::Empty,
            Cell::Empty,
            Cell::Empty,
            num(Some(-2.46), 2),
            Cell::Empty,
            Cell::Empty,
        ]);
        t7.notes.push("Difference = composed − from-scratch accuracy on the task's test part; the paper reports composed models 2.46 % below from-scratch models on average.".into());
        tables.push(t7);

        // T8 cost
        let mut t8 = Table::new(
            "t8",
            "Cost",
            &[
                "artefact",
                "method",
                "params",
                "MACs / image",
                "MAC overhead %",
                "time s",
            ],
        );
        for (s, o, secs) in find(&|k| matches!(k, StepKind::Train { .. })) {
            t8.rows.push(vec![
                t(format!("model {}", s.id.trim_start_matches("train-"))),
                t("training"),
                num(f(&o["params"]), 0),
                num(f(&o["macs"]), 0),
                Cell::Empty,
                num(Some(*secs), 0),
            ]);
        }
        for (s, o, secs) in find(&|k| matches!(k, StepKind::Decompose { .. })) {
            let StepKind::Decompose { method, model } = &s.kind else {
                continue;
            };
            t8.rows.push(vec![
                t(format!("modules of {model} (mean)")),
                t(if method == "grad" {
                    "GradSplitter"
                } else {
                    "CNNSplitter"
                }),
                num(mean(&module_column(o, "params")), 0),
                num(mean(&module_column(o, "macs")), 0),
                pc(mean(&module_column(o, "overhead"))),
                num(f(&o["seconds"]).or(Some(*secs)), 0),
            ]);
        }
        t8.notes.push("MACs count multiply-accumulates (1 MAC = 2 FLOPs); GradSplitter module MACs include the head. Overhead = module MACs / source-model MACs.".into());
        tables.push(t8);

        let seconds = records.iter().map(|r| r.2).sum();
        Ok(Results {
            preset,
            config: cfg.clone(),
            tables,
            series,
            seconds,
            steps_done: records.len(),
            steps_planned: super::plan::steps(cfg).len(),
        })
    }

    /// The Markdown report.
    pub fn markdown(&self, machine: &str, commit: &str, date: &str) -> String {
        let mut s = format!(
            "# cnnsplit reproduction — preset `{}`\n\n- machine: {machine}\n- commit: {commit}\n- written: {date}\n- steps recorded: {} of {}, {:.1} min of step time in all\n- configuration: see `results.json` (`config`)\n\n",
            match self.preset {
                Preset::Smoke => "smoke",
                Preset::Fashion => "fashion",
                Preset::Paper => "paper",
            },
            self.steps_done,
            self.steps_planned,
            self.seconds / 60.0
        );
        s.push_str("Tables follow design §10 (T1–T8); where the paper states a figure it stands in a `paper` row or column beside ours. Plots: `plots/*.svg`.\n\n");
        for t in &self.tables {
            s.push_str(&t.markdown());
        }
        s.push_str("### Plots\n\n![KRR per class](plots/krr_per_class.svg)\n\n![GradSplitter epochs](plots/gs_epochs.svg)\n\n![CNNSplitter generations](plots/ga_generations.svg)\n\n![Patch F1](plots/patch_f1.svg)\n");
        s
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores")
}

fn command_line(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Write `report.md`, `results.json`, `tables/<id>.csv` and `plots/*.svg` under `out`, each
/// file atomically.
pub fn write_all(out: &Path, results: &Results) -> Result<()> {
    let commit = command_line("git", &["rev-parse", "--short", "HEAD"]);
    let date = command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let md = results.markdown(&machine(), &commit, &date);
    let write = |p: &Path, bytes: &[u8]| cnn_models::files::atomic_write(p, bytes);
    write(&out.join("report.md"), md.as_bytes())?;
    for t in &results.tables {
        write(
            &out.join("tables").join(format!("{}.csv", t.id)),
            t.csv().as_bytes(),
        )?;
    }
    let json = serde_json::json!({
        "preset": results.preset, "config": results.config, "commit": commit, "date": date,
        "machine": machine(), "seconds": results.seconds,
        "tables": results.tables.iter().map(|t| serde_json::json!({
            "id": t.id, "title": t.title, "columns": t.columns, "rows": t.json_rows(), "notes": t.notes,
        })).collect::<Vec<_>>(),
        "series": results.series,
    });
    write(
        &out.join("results.json"),
        &serde_json::to_vec_pretty(&json)?,
    )?;
    super::plots::draw_all(&out.join("plots"), &results.series)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reproduce::plan::{steps, Preset, PresetConfig};
    use serde_json::json;

    /// Hand-made records for the smoke plan: two patch runs per method, one GA and one GS
    /// decomposition of the same model with their compositions, one new task.
    fn records(cfg: &PresetConfig) -> Vec<(Step, Value, f64)> {
        let plan = steps(cfg);
        let step = |id: &str| plan.iter().find(|s| s.id == id).unwrap().clone();
        let patch = |p: f64, r: f64, f1: f64| {
            json!({"target_class": "Trouser", "mac_overhead": 0.5, "report": {
                "precision": {"before": 0.5, "after": 0.5 + p / 100.0, "delta_pp": p},
                "recall": {"before": 0.4, "after": 0.4 + r / 100.0, "delta_pp": r},
                "f1": {"before": 0.45, "after": 0.45 + f1 / 100.0, "delta_pp": f1},
                "non_target_accuracy": {"before": 0.8, "after": 0.8, "delta_pp": 0.0}}})
        };
        let modules = |k: f64| {
            json!((0..10).map(|c| json!({"kernels": k, "krr": k / 100.0, "params": 10, "macs": 20, "overhead": 0.4, "class": c})).collect::<Vec<_>>())
        };
        vec![
            (
                step("decompose-grad-simcnn-est1"),
                json!({"modules": modules(60.0), "chosen_epoch": 3, "seconds": 5.0,
                "log": [{"epoch": 1, "val_accuracy": 0.8, "mean_krr": 1.0}, {"epoch": 2, "val_accuracy": 0.82, "mean_krr": 0.6}]}),
                5.0,
            ),
            (
                step("compose-grad-simcnn-est1"),
                json!({"model_accuracy": 0.9, "composed": {"accuracy": 0.89}}),
                1.0,
            ),
            (
                step("decompose-ga-simcnn-est1"),
                json!({"modules": modules(80.0), "chosen_generation": 2, "seconds": 7.0,
                "generations": [{"generation": 0, "composed_accuracy": 0.7, "best_fitness": [0.6, 0.8]}]}),
                7.0,
            ),
            (
                step("compose-ga-simcnn-est1"),
                json!({"model_accuracy": 0.9, "composed": {"accuracy": 0.87}}),
                1.0,
            ),
            (step("patch-grad-0"), patch(10.0, 2.0, 6.0), 1.0),
            (step("patch-grad-1"), patch(20.0, 4.0, 8.0), 1.0),
            (step("patch-ga-0"), patch(4.0, 0.0, 1.0), 1.0),
            (
                step("new-task-0"),
                json!({"class_names": ["Trouser", "Bag"], "class_sources": ["fashion-mnist/Trouser", "fashion-mnist/Bag"],
                "composed_accuracy": 0.95, "scratch_accuracy": 0.97, "compose_seconds": 1.5, "scratch": {"seconds": 30.0}}),
                31.0,
            ),
        ]
    }

    fn table<'a>(r: &'a Results, id: &str) -> &'a Table {
        r.tables.iter().find(|t| t.id == id).unwrap()
    }

    #[test]
    fn tables_follow_the_records_and_csv_json_markdown_agree() {
        let cfg = PresetConfig::of(Preset::Smoke);
        let r = Results::gather(Preset::Smoke, &cfg, &records(&cfg)).unwrap();
        assert_eq!(
            r.tables.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            ["t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8"]
        );
        // T3: GS 60 vs GA 80 kernels → 25 % fewer; losses 1 and 3 pp
        let t3 = table(&r, "t3");
        assert_eq!(t3.rows.len(), 1);
        assert_eq!(t3.rows[0][0], Cell::Text("simcnn-est1".into()));
        let cell = |c: &Cell| match c {
            Cell::Number { value, .. } => *value,
            other => panic!("not a number: {other:?}"),
        };
        assert!((cell(&t3.rows[0][1]) - 1.0).abs() < 1e-9);
        assert!((cell(&t3.rows[0][3]) - 3.0).abs() < 1e-9);
        assert!((cell(&t3.rows[0][5]) - 25.0).abs() < 1e-9);
        // T6: the GradSplitter mean row averages the two patches: ΔP 15, ΔR 3, ΔF1 7
        let t6 = table(&r, "t6");
        let mean_row = t6
            .rows
            .iter()
            .find(|row| {
                row[0] == Cell::Text("GradSplitter".into()) && row[1] == Cell::Text("mean".into())
            })
            .unwrap();
        assert!((cell(&mean_row[4]) - 15.0).abs() < 1e-9);
        assert!((cell(&mean_row[7]) - 3.0).abs() < 1e-9);
        assert!((cell(&mean_row[10]) - 7.0).abs() < 1e-9);
        // T7: composed − scratch = −2 pp
        let t7 = table(&r, "t7");
        assert!((cell(&t7.rows[0][5]) + 2.0).abs() < 1e-9);
        // series for the plots
        assert_eq!(r.series.krr_grad.len(), 10);
        assert_eq!(r.series.krr_ga[0], 0.8);
        assert_eq!(r.series.gs_epochs[0].1.len(), 2);
        assert_eq!(r.series.ga_generations, vec![(0.0, 0.7, 0.7)]);

        // every table: CSV, JSON and Markdown carry the same rows and values
        for t in &r.tables {
            let csv = t.csv();
            let lines: Vec<&str> = csv.lines().collect();
            assert_eq!(lines.len(), t.rows.len() + 1, "{}", t.id);
            let json = t.json_rows();
            let rows = json.as_array().unwrap();
            assert_eq!(rows.len(), t.rows.len());
            let md = t.markdown();
            assert_eq!(
                md.lines().filter(|l| l.starts_with("| ")).count(),
                t.rows.len() + 1
            );
            for (row, obj) in t.rows.iter().zip(rows) {
                for (c, cell) in t.columns.iter().zip(row) {
                    match cell {
                        Cell::Number { value, digits } => {
                            assert_eq!(obj[c].as_f64().unwrap(), *value);
                            assert!(csv.contains(&format!("{value:.*}", digits)));
                        }
                        Cell::Text(s) => assert_eq!(obj[c].as_str().unwrap(), s),
                        Cell::Empty => assert!(obj[c].is_null()),
                    }
                }
            }
        }
        // a comma inside a field is quoted in CSV
        assert!(table(&r, "t7").csv().contains("\"Trouser, Bag\""));
    }

    #[test]
    fn report_files_are_written_with_plots() {
        let cfg = PresetConfig::of(Preset::Smoke);
        let r = Results::gather(Preset::Smoke, &cfg, &records(&cfg)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        write_all(dir.path(), &r).unwrap();
        let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
        assert!(md.contains("### T3 — GradSplitter vs CNNSplitter"));
        assert!(md.contains("steps recorded: 8 of 36"));
        let json: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("results.json")).unwrap())
                .unwrap();
        assert_eq!(json["tables"].as_array().unwrap().len(), 8);
        for id in ["t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8"] {
            assert!(dir.path().join("tables").join(format!("{id}.csv")).exists());
        }
        for p in ["krr_per_class", "gs_epochs", "ga_generations", "patch_f1"] {
            let svg =
                std::fs::read_to_string(dir.path().join("plots").join(format!("{p}.svg"))).unwrap();
            assert!(svg.starts_with("<svg"), "{p}");
            assert!(svg.contains("<rect") || svg.contains("<polyline"), "{p}");
        }
    }
}
