//! How results are printed: percentages, pretty JSON, evaluation tables.

use cnn_models::metrics::Evaluation;

/// Print a JSON value, pretty, on stdout (the `--json` output of every command).
pub fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).expect("serialisable"));
}

/// A fraction as a percentage with two decimals (`0.8540` → `85.40%`).
pub fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

/// Print accuracy, per-class precision/recall/F1 and the confusion matrix.
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
