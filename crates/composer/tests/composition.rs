//! Composition and per-class metrics on hand-computed examples (invariant 13).

use composer::{
    accuracy, binary_module_metrics, class_metrics, compose_predictions, ClassMetrics,
    ComposerError,
};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn argmax_ties_go_to_the_lowest_module() {
    let scores = vec![
        vec![1.0, 0.5, -2.0, 3.0, 0.0],
        vec![1.0, 0.7, -1.0, 3.0, 0.0],
        vec![0.0, 0.7, -1.0, 4.0, 0.0],
    ];
    // Image 0: modules 0, 1 tie → 0; image 1: 1, 2 tie → 1; image 2: 1, 2 tie → 1;
    // image 3: module 2; image 4: all tie → 0.
    assert_eq!(compose_predictions(&scores).unwrap(), vec![0, 1, 1, 2, 0]);
    assert_eq!(compose_predictions(&[vec![-1.0, 2.0]]).unwrap(), vec![0, 0]);
    assert_eq!(
        compose_predictions(&[vec![], vec![]]).unwrap(),
        Vec::<u32>::new()
    );
}

#[test]
fn composition_rejects_bad_inputs() {
    assert!(matches!(
        compose_predictions(&[]),
        Err(ComposerError::Empty { .. })
    ));
    assert!(matches!(
        compose_predictions(&[vec![1.0, 2.0], vec![1.0]]),
        Err(ComposerError::LengthMismatch {
            expected: 2,
            found: 1,
            ..
        })
    ));
    assert!(matches!(
        compose_predictions(&[vec![1.0, 2.0], vec![1.0, f32::NAN]]),
        Err(ComposerError::NotFinite { index: 1, .. })
    ));
}

#[test]
fn class_metrics_by_hand() {
    let labels = [0, 0, 1, 2];
    let predictions = [0, 1, 1, 1];
    let m = class_metrics(&labels, &predictions, 3).unwrap();
    // Class 0: tp 1, fp 0, fn 1 → P 1, R 0.5, F1 2/3.
    assert!(close(m[0].precision, 1.0) && close(m[0].recall, 0.5) && close(m[0].f1, 2.0 / 3.0));
    // Class 1: tp 1, fp 2, fn 0 → P 1/3, R 1, F1 0.5.
    assert!(close(m[1].precision, 1.0 / 3.0) && close(m[1].recall, 1.0) && close(m[1].f1, 0.5));
    // Class 2: never predicted (precision 0/0 = 0), one missed → everything 0.
    assert_eq!((m[2].precision, m[2].recall, m[2].f1), (0.0, 0.0, 0.0));
    assert_eq!(
        (
            m[2].true_positives,
            m[2].false_positives,
            m[2].false_negatives
        ),
        (0, 0, 1)
    );
    assert!(close(accuracy(&labels, &predictions).unwrap(), 0.5));
    assert_eq!(
        ClassMetrics::of_class(&labels, &predictions, 1).unwrap(),
        m[1]
    );
}

#[test]
fn undefined_metrics_are_zero_not_nan() {
    let m = ClassMetrics::from_counts(0, 0, 0);
    assert_eq!((m.precision, m.recall, m.f1), (0.0, 0.0, 0.0));
    assert_eq!(accuracy(&[], &[]).unwrap(), 0.0);
    let m = class_metrics(&[0, 0], &[0, 0], 2).unwrap();
    assert_eq!((m[1].precision, m[1].recall, m[1].f1), (0.0, 0.0, 0.0));
}

#[test]
fn class_metrics_reject_bad_inputs() {
    assert!(matches!(
        class_metrics(&[0, 3], &[0, 0], 3),
        Err(ComposerError::LabelOutOfRange {
            label: 3,
            index: 1,
            classes: 3
        })
    ));
    assert!(matches!(
        class_metrics(&[0, 1], &[0, 5], 3),
        Err(ComposerError::LabelOutOfRange {
            label: 5,
            index: 1,
            ..
        })
    ));
    assert!(accuracy(&[0, 1], &[0]).is_err());
}

#[test]
fn binary_module_metrics_use_a_strict_half_threshold() {
    // Scores 0.9 (class 1: tp), 0.5 (class 1, not > 0.5: fn), 0.7 (class 0: fp), 0.2 (tn).
    let m = binary_module_metrics(&[0.9, 0.5, 0.7, 0.2], &[1, 1, 0, 0], 1).unwrap();
    assert_eq!(
        (m.true_positives, m.false_positives, m.false_negatives),
        (1, 1, 1)
    );
    assert!(close(m.precision, 0.5) && close(m.recall, 0.5) && close(m.f1, 0.5));
    // No positive predicted at all: F1 = 0, not NaN.
    let m = binary_module_metrics(&[0.1, 0.2], &[1, 0], 1).unwrap();
    assert_eq!(m.f1, 0.0);
    assert!(binary_module_metrics(&[0.1], &[1, 0], 1).is_err());
    assert!(binary_module_metrics(&[f32::NAN, 0.1], &[1, 0], 1).is_err());
}
