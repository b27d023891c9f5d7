//! Calibration and patching on hand-computed examples (design §7, invariant 13).

use composer::{
    patch_and_report, softmax_rows, weak_predictions, Calibration, ComposerError, MetricChange,
    PatchReport, PatchRule,
};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn minmax_maps_calibration_min_to_0_and_max_to_1() {
    let scores = [3.5f32, -1.25, 7.75, 2.0];
    let cal = Calibration::fit_minmax(&scores).unwrap();
    assert_eq!(
        cal,
        Calibration::MinMax {
            min: -1.25,
            max: 7.75
        }
    );
    assert_eq!(cal.apply(-1.25, false), 0.0);
    assert_eq!(cal.apply(7.75, false), 1.0);
    assert!(close(cal.apply(3.25, false), 0.5));
    // Not clipped by default (reference behaviour); clipped on request.
    assert!(close(cal.apply(16.75, false), 2.0));
    assert!(close(cal.apply(-10.25, false), -1.0));
    assert_eq!(cal.apply(16.75, true), 1.0);
    assert_eq!(cal.apply(-10.25, true), 0.0);
}

#[test]
fn a_constant_calibration_range_is_refused_when_patching() {
    // a module whose score was constant on its class's validation images (max = min): before,
    // the range mapped every score ≥ max to 1, so the patched model predicted the target
    // class for (nearly) every image
    let cal = Calibration::fit_minmax(&[2.5, 2.5, 2.5]).unwrap();
    let err = cal.validate().unwrap_err();
    assert!(
        matches!(err, ComposerError::DegenerateCalibration { lo, hi, .. } if lo == 2.5 && hi == 2.5),
        "{err}"
    );
    assert!(err.to_string().contains("max ≤ min"), "{err}");
    let rule = PatchRule::last_column(3, cal, false);
    let weak_logits = [3.0, 0.0, 0.0, 0.0, 3.0, 0.0];
    let err = rule.predict(&weak_logits, 3, &[2.5, 2.5]).unwrap_err();
    assert!(
        matches!(err, ComposerError::DegenerateCalibration { .. }),
        "{err}"
    );
    let cal = Calibration::fit_percentile(&[4.0], 10.0, 90.0).unwrap();
    assert!(PatchRule::last_column(3, cal, false)
        .predict(&weak_logits, 3, &[4.0, 4.0])
        .is_err());
    // applied unchecked, a degenerate range still never gives NaN
    assert!(cal.apply(4.0, false).is_finite());
    assert!(Calibration::MinMax { min: 2.0, max: 1.0 }
        .validate()
        .is_err());
}

#[test]
fn percentile_calibration_interpolates_like_numpy() {
    // Sorted [1, 2, 3, 4, 5]: p10 → rank 0.4 → 1.4; p90 → rank 3.6 → 4.6; p50 → 3.
    let cal = Calibration::fit_percentile(&[5.0, 1.0, 4.0, 2.0, 3.0], 10.0, 90.0).unwrap();
    let (lo, hi) = cal.range().unwrap();
    assert!(
        (lo - 1.4).abs() < 1e-6 && (hi - 4.6).abs() < 1e-6,
        "{lo} {hi}"
    );
    let cal = Calibration::fit_percentile(&[5.0, 1.0, 4.0, 2.0, 3.0], 0.0, 50.0).unwrap();
    assert_eq!(cal.range(), Some((1.0, 3.0)));
    assert!(close(cal.apply(2.0, false), 0.5));
    assert!(matches!(
        Calibration::fit_percentile(&[1.0], 90.0, 10.0),
        Err(ComposerError::InvalidPercentile { .. })
    ));
    assert!(Calibration::fit_percentile(&[1.0], -1.0, 10.0).is_err());
}

#[test]
fn calibration_rejects_bad_scores_and_round_trips() {
    assert!(matches!(
        Calibration::fit_minmax(&[]),
        Err(ComposerError::Empty { .. })
    ));
    assert!(matches!(
        Calibration::fit_minmax(&[1.0, f32::NAN]),
        Err(ComposerError::NotFinite { index: 1, .. })
    ));
    assert_eq!(Calibration::None.apply(1.7, false), f64::from(1.7f32));
    assert_eq!(Calibration::None.apply(1.7, true), 1.0);
    for cal in [
        Calibration::None,
        Calibration::MinMax {
            min: -1.5,
            max: 2.25,
        },
        Calibration::fit_percentile(&[1.0, 2.0, 8.0], 10.0, 90.0).unwrap(),
    ] {
        let json = serde_json::to_string(&cal).unwrap();
        assert_eq!(serde_json::from_str::<Calibration>(&json).unwrap(), cal);
    }
    assert!(Calibration::MinMax { min: 2.0, max: 1.0 }
        .validate()
        .is_err());
}

/// Weak model with 3 classes (target class = column 2), four test images, labels [0, 2, 2, 1].
/// Softmax rows: [3,0,0] → p0 ≈ .909; [0,0,1] → (.212, .212, .576); [2,0,0] → (.787, .107,
/// .107); [0,2,0] → (.107, .787, .107). Before: [0, 2, 0, 1].
/// Module scores [1, 3, 9, 8] with min–max range (1, 9) → [0, .25, 1, .875]; after:
/// [0, 2, 2, 2].
fn example() -> (Vec<u32>, Vec<f32>, Vec<f32>, PatchRule) {
    let labels = vec![0, 2, 2, 1];
    let logits = vec![3.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 0.0, 0.0, 2.0, 0.0];
    let module = vec![1.0, 3.0, 9.0, 8.0];
    let rule = PatchRule::last_column(3, Calibration::fit_minmax(&[1.0, 5.0, 9.0]).unwrap(), false);
    (labels, logits, module, rule)
}

#[test]
fn only_the_target_column_is_replaced() {
    let (_, logits, module, rule) = example();
    let p = softmax_rows(&logits, 3).unwrap();
    let patched = rule.patched_scores(&logits, 3, &module).unwrap();
    let calibrated = [0.0, 0.25, 1.0, 0.875];
    for row in 0..4 {
        for col in 0..3 {
            let (got, want) = (patched[row * 3 + col], p[row * 3 + col]);
            if col == 2 {
                assert!(close(got, calibrated[row]), "row {row}");
            } else {
                assert_eq!(got, want, "row {row} column {col} must be untouched");
            }
        }
    }
    assert!(close(p[3 + 2], 1f64.exp() / (2.0 + 1f64.exp())));
    // A different target column replaces that column instead.
    let rule0 = PatchRule {
        target_column: 0,
        ..rule
    };
    let patched = rule0.patched_scores(&logits, 3, &module).unwrap();
    for row in 0..4 {
        assert!(close(patched[row * 3], calibrated[row]));
        assert_eq!(
            &patched[row * 3 + 1..row * 3 + 3],
            &p[row * 3 + 1..row * 3 + 3]
        );
    }
}

#[test]
fn patch_report_by_hand() {
    let (labels, logits, module, rule) = example();
    assert_eq!(weak_predictions(&logits, 3).unwrap(), vec![0, 2, 0, 1]);
    let (after, report) = patch_and_report(&labels, &logits, 3, &module, &rule).unwrap();
    assert_eq!(after, vec![0, 2, 2, 2]);
    assert_eq!(report.target_class, 2);
    assert_eq!((report.images, report.target_images), (4, 2));
    // Before: tp 1, fp 0, fn 1 → P 1, R .5, F1 2/3. After: tp 2, fp 1, fn 0 → P 2/3, R 1, F1 .8.
    assert!(close(report.precision.before, 1.0) && close(report.precision.after, 2.0 / 3.0));
    assert!(close(report.recall.before, 0.5) && close(report.recall.after, 1.0));
    assert!(close(report.f1.before, 2.0 / 3.0) && close(report.f1.after, 0.8));
    assert!(close(report.precision.delta_pp, -100.0 / 3.0));
    assert!(close(report.recall.relative_percent.unwrap(), 100.0));
    assert!(close(report.f1.delta_pp, 40.0 / 3.0));
    assert!(close(report.f1.relative_percent.unwrap(), 20.0));
    // Non-target images 0 (label 0) and 3 (label 1): 2/2 right before, 1/2 after.
    assert!(close(report.non_target_accuracy.before, 1.0));
    assert!(close(report.non_target_accuracy.after, 0.5));
    assert!(close(report.non_target_accuracy.delta_pp, -50.0));
    assert_eq!(report.target_after.false_positives, 1);
}

#[test]
fn clipping_caps_the_patched_score() {
    let (_, logits, _, rule) = example();
    let module = [12.0, 0.0, 0.0, 0.0];
    let unclipped = rule.patched_scores(&logits, 3, &module).unwrap();
    assert!(close(unclipped[2], 11.0 / 8.0));
    assert!(close(unclipped[5], -1.0 / 8.0));
    let clipped = PatchRule { clip: true, ..rule }
        .patched_scores(&logits, 3, &module)
        .unwrap();
    assert_eq!((clipped[2], clipped[5]), (1.0, 0.0));
}

#[test]
fn absent_target_class_gives_zero_metrics_and_no_relative_change() {
    // The target class 2 appears neither in labels nor in predictions.
    let report = PatchReport::compute(&[0, 1], &[0, 1], &[0, 0], 2).unwrap();
    assert_eq!(
        (
            report.precision.before,
            report.recall.after,
            report.f1.after
        ),
        (0.0, 0.0, 0.0)
    );
    assert_eq!(report.precision.relative_percent, None);
    assert!(close(report.non_target_accuracy.after, 0.5));
    assert_eq!(MetricChange::new(0.0, 0.25).relative_percent, None);
    assert!(close(
        MetricChange::new(0.5, 0.25).relative_percent.unwrap(),
        -50.0
    ));
    // Only target-class images: non-target accuracy is 0/0 = 0.
    let report = PatchReport::compute(&[2, 2], &[2, 0], &[2, 2], 2).unwrap();
    assert_eq!(report.non_target_accuracy.before, 0.0);
}

#[test]
fn patching_rejects_bad_shapes() {
    let (labels, logits, module, rule) = example();
    assert!(matches!(
        PatchRule {
            target_column: 3,
            ..rule
        }
        .predict(&logits, 3, &module),
        Err(ComposerError::ColumnOutOfRange {
            column: 3,
            columns: 3
        })
    ));
    assert!(matches!(
        rule.predict(&logits[..11], 3, &module),
        Err(ComposerError::LengthMismatch { .. })
    ));
    assert!(matches!(
        rule.predict(&logits, 3, &module[..3]),
        Err(ComposerError::LengthMismatch {
            expected: 4,
            found: 3,
            ..
        })
    ));
    assert!(patch_and_report(&labels[..3], &logits, 3, &module, &rule).is_err());
    let mut nan = logits.clone();
    nan[4] = f32::NAN;
    assert!(matches!(
        rule.predict(&nan, 3, &module),
        Err(ComposerError::NotFinite { index: 4, .. })
    ));
}
