//! The paper's tables (design §10) from the step records, written as Markdown, CSV and JSON from
//! one [`Table`] each, so the three always agree.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;
use serde_json::Value;

use super::plan::{Preset, PresetConfig, Step};

pub mod claims;
pub mod settings;
mod tables;

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
    /// The paper's claims with our figures and verdicts.
    pub claims: Vec<claims::Claim>,
    /// Settings where the preset differs from the spec, with its reasons.
    pub settings: Vec<settings::Difference>,
    /// Total seconds of the recorded steps.
    pub seconds: f64,
    /// Steps recorded / planned.
    pub steps_done: usize,
    /// Steps planned.
    pub steps_planned: usize,
    /// Commit of the source that ran each recorded step: commit → step ids.
    pub step_commits: std::collections::BTreeMap<String, Vec<String>>,
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

impl Results {
    /// Build the tables from `(step, output, seconds)` records; a decomposition step's output
    /// must read as its method's [`cnn_models::DecompositionRecord`].
    pub fn gather(
        preset: Preset,
        cfg: &PresetConfig,
        records: &[(Step, Value, f64)],
    ) -> Result<Self> {
        let decompositions = tables::decompositions(records)?;
        let mut series = Series {
            classes: cfg.class_names.clone(),
            ..Series::default()
        };
        let losses = tables::losses(records, &decompositions);
        let tables = vec![
            tables::models(records),
            tables::modularisation(records, &decompositions, &losses, &mut series),
            tables::grad_vs_ga(&losses),
            tables::module_quality(cfg, records, &decompositions),
            tables::same_task_reuse(records),
            tables::patching(records, &decompositions, &mut series),
            tables::new_task(records),
            tables::cost(records, &decompositions),
        ];
        tables::krr_series(&decompositions, &mut series);
        let claims = tables::claims(cfg, records, &decompositions);
        let seconds = records.iter().map(|r| r.2).sum();
        Ok(Results {
            preset,
            config: cfg.clone(),
            tables,
            series,
            claims,
            settings: settings::differences(cfg),
            seconds,
            steps_done: records.len(),
            steps_planned: super::plan::steps(cfg).len(),
            step_commits: Default::default(),
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
                Preset::Tiny => "tiny",
            },
            self.steps_done,
            self.steps_planned,
            self.seconds / 60.0
        );
        if !self.step_commits.is_empty() {
            s.push_str("- steps run by commit:");
            for (commit, ids) in &self.step_commits {
                s.push_str(&format!(" {commit} ({} steps);", ids.len()));
            }
            s.push_str(" the step list per commit is in `results.json` (`step_commits`)\n\n");
        }
        s.push_str("Tables follow design §10 (T1–T8); where the paper states a figure it stands in a `paper` row or column beside ours. Plots: `plots/*.svg`.\n\n");
        s.push_str(&claims::markdown(&self.claims));
        s.push_str(&settings::markdown(&self.settings));
        s.push_str("## Tables\n\n");
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
        "step_commits": results.step_commits,
        "machine": machine(), "seconds": results.seconds,
        "tables": results.tables.iter().map(|t| serde_json::json!({
            "id": t.id, "title": t.title, "columns": t.columns, "rows": t.json_rows(), "notes": t.notes,
        })).collect::<Vec<_>>(),
        "series": results.series,
        "claims": results.claims,
        "settings_vs_spec": results.settings,
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
    use cnn_models::decomposition::{DecompositionRecord, ModuleSummary};
    use serde_json::json;

    /// Hand-made records for the smoke plan: two patch runs per method, one GA and one GS
    /// decomposition of the same model with their compositions, one new task.
    fn records(cfg: &PresetConfig) -> Vec<(Step, Value, f64)> {
        let plan = steps(cfg);
        let step = |id: &str| plan.iter().find(|s| s.id == id).unwrap().clone();
        let patch = |p: f64, r: f64, f1: f64| {
            json!({"target_class": "Trouser", "mac_overhead": 0.5, "module_macs": 20, "model_macs": 80, "report": {
                "precision": {"before": 0.5, "after": 0.5 + p / 100.0, "delta_pp": p},
                "recall": {"before": 0.4, "after": 0.4 + r / 100.0, "delta_pp": r},
                "f1": {"before": 0.45, "after": 0.45 + f1 / 100.0, "delta_pp": f1},
                "non_target_accuracy": {"before": 0.8, "after": 0.8, "delta_pp": 0.0}}})
        };
        let modules = |k: f64| {
            (0..10)
                .map(|c| ModuleSummary {
                    class: c,
                    name: format!("c{c}"),
                    dir: format!("module_{c}").into(),
                    kernels: k as usize,
                    krr: k / 100.0,
                    params: 10,
                    macs: 20,
                    overhead: 0.4,
                    zeroed_convs: vec![],
                    collapsed: vec![],
                })
                .collect::<Vec<_>>()
        };
        let epoch = |epoch, val_accuracy, mean_krr| splitter_grad::SearchEpoch {
            epoch,
            phase: splitter_grad::Phase::Mask,
            train_loss: 0.0,
            val_accuracy,
            mean_kernels: 0.0,
            mean_krr,
            seconds: 0.0,
            val_balanced_accuracy: None,
            collapsed_classes: vec![],
        };
        let grad = DecompositionRecord {
            method: "grad".into(),
            modules: modules(60.0),
            seconds: 5.0,
            ..DecompositionRecord::new(splitter_grad::GradRecord {
                config: splitter_grad::GradSplitConfig::default(),
                train_images: 100,
                chosen_epoch: 3,
                log: vec![epoch(1, 0.8, 1.0), epoch(2, 0.82, 0.6)],
                selection_metric: splitter_grad::SelectionMetric::Accuracy,
                model_val_balanced_accuracy: None,
                epochs_run: 2,
                stopped_early: false,
            })
        };
        let ga = DecompositionRecord {
            method: "ga".into(),
            modules: modules(80.0),
            seconds: 7.0,
            ..DecompositionRecord::new(splitter_ga::GaRecord {
                config: splitter_ga::GaSplitConfig::new(splitter_ga::GaConfig::scaled_for(10)),
                fitness_images: 100,
                holdout_images: 0,
                chosen_generation: 2,
                chosen_accuracy: 0.7,
                chosen_holdout_accuracy: None,
                peak_accuracy: 0.7,
                near_chance: false,
                ratio_probe: None,
                chosen_diversity: 0.1,
                importance_images: vec![10; 10],
                importance_fallback: vec![],
                sensitivity: splitter_ga::LayerSensitivity {
                    ratios: vec![0.5],
                    full_accuracy: 0.9,
                    accuracy: vec![],
                },
                sensitive_layers: vec![],
                generations: vec![splitter_ga::GenerationSummary {
                    generation: 0,
                    composed_accuracy: 0.7,
                    top_accuracy: 0.7,
                    top_diversity: 0.1,
                    score: None,
                    best_fitness: vec![0.6, 0.8],
                    mean_fitness: vec![0.5, 0.6],
                    mean_kernels: 80.0,
                    accuracy_weight: 0.9,
                    seconds: 1.0,
                    holdout_accuracy: None,
                }],
                evaluated_modules: 40,
                reused_modules: 0,
                generations_per_minute: 60.0,
                evaluation_fraction: Some(0.5),
            })
        };
        // the strong model's GradSplitter module of class 1 is collapsed
        let mut grad_strong = grad.clone();
        grad_strong.modules[1].collapsed = vec![cnn_models::module::Collapse::ZeroF1];
        // est2's GradSplitter module of class 4 kept no kernel in conv 3
        let mut grad_est2 = grad.clone();
        grad_est2.modules[4].collapsed =
            vec![cnn_models::module::Collapse::EmptyLayer { convs: vec![3] }];
        let metrics = json!(vec![
            vec![
                json!({"precision": 0.5, "recall": 0.5, "f1": 0.5});
                10
            ];
            2
        ]);
        let chosen = json!(vec![0; 10]);
        vec![
            (
                step("decompose-grad-simcnn-strong"),
                grad_strong.to_json_value().unwrap(),
                5.0,
            ),
            (
                step("compose-grad-simcnn-strong"),
                json!({"model_accuracy": 0.9, "composed": {"accuracy": 0.89}}),
                1.0,
            ),
            (
                step("decompose-ga-simcnn-strong"),
                ga.to_json_value().unwrap(),
                7.0,
            ),
            (
                step("compose-ga-simcnn-strong"),
                json!({"model_accuracy": 0.9, "composed": {"accuracy": 0.87}}),
                1.0,
            ),
            (
                step("decompose-grad-simcnn-est1"),
                grad.to_json_value().unwrap(),
                5.0,
            ),
            (
                step("decompose-grad-simcnn-est2"),
                grad_est2.to_json_value().unwrap(),
                5.0,
            ),
            (step("patch-grad-0"), patch(10.0, 2.0, 6.0), 1.0),
            (step("patch-grad-1"), patch(20.0, 4.0, 8.0), 1.0),
            (step("patch-grad-2"), patch(30.0, 6.0, 10.0), 1.0),
            (step("patch-ga-0"), patch(4.0, 0.0, 1.0), 1.0),
            (
                step("select-intra"),
                json!({"best_model_accuracy": 0.8, "mean_model_accuracy": 0.78, "ensemble_accuracy": 0.81,
                "composed_accuracy": 0.83, "gain_over_best": 0.03, "chosen_model": chosen,
                "selection_metrics": metrics}),
                2.0,
            ),
            (
                step("new-task-0"),
                json!({"class_names": ["Trouser", "Bag"], "class_sources": ["fashion-mnist/Trouser", "fashion-mnist/Bag"],
                "composed_accuracy": 0.95, "scratch_accuracy": 0.97, "compose_seconds": 1.5, "scratch": {"seconds": 30.0},
                "composed": {"confusion": {"counts": [[150, 10], [5, 35]]}}}),
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
        assert_eq!(t3.rows[0][0], Cell::Text("simcnn-strong".into()));
        let cell = |c: &Cell| match c {
            Cell::Number { value, .. } => *value,
            other => panic!("not a number: {other:?}"),
        };
        assert!((cell(&t3.rows[0][1]) - 1.0).abs() < 1e-9);
        assert!((cell(&t3.rows[0][3]) - 3.0).abs() < 1e-9);
        assert!((cell(&t3.rows[0][5]) - 25.0).abs() < 1e-9);
        // T6: the GradSplitter mean row averages the patches of classes 0 and 2 and leaves the
        // collapsed module of class 1 out: ΔP 20, ΔR 4, ΔF1 8
        let t6 = table(&r, "t6");
        let col = |t: &Table, name: &str| t.columns.iter().position(|c| c == name).unwrap();
        let mean_row = t6
            .rows
            .iter()
            .find(|row| {
                row[0] == Cell::Text("GradSplitter".into()) && row[1] == Cell::Text("mean".into())
            })
            .unwrap();
        assert!((cell(&mean_row[4]) - 20.0).abs() < 1e-9);
        assert!((cell(&mean_row[7]) - 4.0).abs() < 1e-9);
        assert!((cell(&mean_row[10]) - 8.0).abs() < 1e-9);
        assert_eq!(
            mean_row[col(t6, "collapsed")],
            Cell::Text("1 excluded".into())
        );
        assert_eq!(
            t6.rows[1][col(t6, "in mean")],
            Cell::Text("excluded: collapsed".into())
        );
        assert_eq!(
            t6.rows[1][col(t6, "collapsed")],
            Cell::Text("F1 = 0 on its class's validation images".into())
        );
        assert_eq!(t6.rows[0][col(t6, "in mean")], Cell::Text("yes".into()));
        // MAC overhead: a patch against the weak model (20 / 80 MACs), a module against its
        // source model (0.4, as T8 shows it), each column saying which
        assert!((cell(&t6.rows[0][col(t6, "MAC overhead vs weak model %")]) - 25.0).abs() < 1e-9);
        assert!((cell(&t6.rows[0][col(t6, "module MACs vs source model %")]) - 40.0).abs() < 1e-9);
        let t8 = table(&r, "t8");
        let strong_row = t8
            .rows
            .iter()
            .find(|row| row[0] == Cell::Text("modules of simcnn-strong (mean)".into()))
            .unwrap();
        assert!((cell(&strong_row[col(t8, "MAC overhead vs source model %")]) - 40.0).abs() < 1e-9);
        // T4: est2's collapsed Coat module says why; the others are empty
        let t4 = table(&r, "t4");
        let reasons: Vec<&Cell> = t4
            .rows
            .iter()
            .filter(|row| row[1] == Cell::Text("simcnn-est2".into()))
            .map(|row| &row[col(t4, "collapsed")])
            .collect();
        assert_eq!(reasons.len(), 10);
        assert_eq!(reasons[4], &Cell::Text("convs [3] kept no kernel".into()));
        assert!(reasons
            .iter()
            .enumerate()
            .all(|(c, r)| c == 4 || **r == Cell::Text(String::new())));
        // T7: composed − scratch = −2 pp; majority share 160 / 200 from the confusion counts
        let t7 = table(&r, "t7");
        assert!((cell(&t7.rows[0][col(t7, "difference pp")]) + 2.0).abs() < 1e-9);
        assert!((cell(&t7.rows[0][col(t7, "majority share %")]) - 80.0).abs() < 1e-9);
        // the claims: GS vs GA voided by the collapsed GradSplitter module; patching holds on
        // the two healthy modules; the new task holds; intra voided by est2's collapsed module
        let verdict = |prefix: &str| {
            r.claims
                .iter()
                .find(|c| c.claim.starts_with(prefix))
                .unwrap_or_else(|| panic!("{prefix}"))
        };
        use claims::Verdict;
        assert_eq!(
            verdict("GradSplitter modules keep").verdict,
            Verdict::NotTested
        );
        let p = verdict("patching with GradSplitter");
        assert_eq!(p.verdict, Verdict::Holds, "{p:?}");
        assert!(p.reason.contains("1 of 3 patches excluded"), "{}", p.reason);
        assert_eq!(verdict("modules composed into").verdict, Verdict::Holds);
        let intra = verdict("same-task reuse (intra");
        assert_eq!(intra.verdict, Verdict::NotTested);
        assert!(intra.reason.contains("simcnn-est2"), "{}", intra.reason);
        assert_eq!(
            verdict("same-task reuse (inter").verdict,
            Verdict::NotTested
        );
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
        assert!(md.contains(&format!(
            "steps recorded: {} of {}",
            records(&cfg).len(),
            steps(&cfg).len()
        )));
        assert!(md.contains("## Claims"));
        assert!(md.contains("## Settings that differ from the spec"));
        let json: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("results.json")).unwrap())
                .unwrap();
        assert_eq!(json["tables"].as_array().unwrap().len(), 8);
        let claims = json["claims"].as_array().unwrap();
        assert_eq!(claims.len(), 6);
        for c in claims {
            for key in ["claim", "ours", "paper", "verdict", "reason"] {
                assert!(c[key].is_string(), "{key} in {c}");
            }
            assert!(
                ["holds", "does-not-hold", "not-tested"].contains(&c["verdict"].as_str().unwrap())
            );
        }
        assert!(!json["settings_vs_spec"].as_array().unwrap().is_empty());
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

    #[test]
    fn a_decomposition_output_that_is_no_record_stops_the_report() {
        let cfg = PresetConfig::of(Preset::Smoke);
        let mut records = records(&cfg);
        records[0].1 = json!({"modules": [], "chosen_epoch": 3});
        let err = Results::gather(Preset::Smoke, &cfg, &records)
            .expect_err("an unreadable record is an error")
            .to_string();
        assert!(err.contains("decompose-grad-simcnn-strong"), "{err}");
    }
}
