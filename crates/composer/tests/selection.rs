//! Module selection for reuse (design §8, invariant 13).

use composer::{best_by_f1, map_classes, select_best_per_class, ClassMetrics, ComposerError};

fn with_f1(f1: f64) -> ClassMetrics {
    ClassMetrics {
        precision: 0.0,
        recall: 0.0,
        f1,
        support: 0,
        true_positives: 0,
        false_positives: 0,
        false_negatives: 0,
    }
}

#[test]
fn best_f1_per_class_with_ties_to_the_lowest_candidate() {
    let metrics = vec![
        vec![with_f1(0.8), with_f1(0.5), with_f1(0.9)],
        vec![with_f1(0.9), with_f1(0.5), with_f1(0.7)],
        vec![with_f1(0.9), with_f1(0.6), with_f1(f64::NAN)],
    ];
    // Class 0: candidates 1 and 2 tie at 0.9 → 1; class 1: candidate 2; class 2: candidate 0
    // (NaN counts as 0).
    assert_eq!(select_best_per_class(&metrics).unwrap(), vec![1, 2, 0]);
    assert_eq!(best_by_f1(&[with_f1(0.0), with_f1(0.0)]), Some(0));
    assert_eq!(best_by_f1(&[]), None);
}

#[test]
fn selection_rejects_ragged_or_empty_metrics() {
    assert!(matches!(
        select_best_per_class(&[]),
        Err(ComposerError::Empty { .. })
    ));
    let ragged = vec![vec![with_f1(0.1), with_f1(0.2)], vec![with_f1(0.3)]];
    assert!(matches!(
        select_best_per_class(&ragged),
        Err(ComposerError::LengthMismatch {
            expected: 2,
            found: 1,
            ..
        })
    ));
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn new_task_classes_map_by_name_in_task_order() {
    let available = vec![
        ("cat".to_string(), "cifar10/estimator0"),
        ("dog".to_string(), "cifar10/estimator0"),
        ("cat".to_string(), "cifar10/estimator3"),
        ("digit_3".to_string(), "svhn/estimator1"),
    ];
    let mapped = map_classes(&names(&["digit_3", "cat"]), &available).unwrap();
    assert_eq!(mapped.len(), 2);
    assert_eq!((mapped[0].label, mapped[0].name.as_str()), (0, "digit_3"));
    assert_eq!(mapped[0].candidates, vec!["svhn/estimator1"]);
    assert_eq!((mapped[1].label, mapped[1].name.as_str()), (1, "cat"));
    assert_eq!(
        mapped[1].candidates,
        vec!["cifar10/estimator0", "cifar10/estimator3"]
    );
}

#[test]
fn mapping_errors_name_the_problem_class() {
    let available = vec![
        ("cat".to_string(), 0usize),
        ("dog".to_string(), 1),
        ("cat".to_string(), 2),
    ];
    let err = map_classes(&names(&["cat", "horse"]), &available).unwrap_err();
    assert_eq!(
        err,
        ComposerError::MissingClass {
            name: "horse".into(),
            available: "cat, dog".into()
        }
    );
    assert!(err.to_string().contains("\"horse\""), "{err}");
    assert!(err.to_string().contains("cat, dog"), "{err}");
    // Names match exactly (case matters).
    assert!(map_classes(&names(&["Cat"]), &available).is_err());
    let err = map_classes(&names(&["dog", "dog"]), &available).unwrap_err();
    assert_eq!(
        err,
        ComposerError::DuplicateTaskClass { name: "dog".into() }
    );
    assert!(matches!(
        map_classes::<usize>(&[], &available),
        Err(ComposerError::Empty { .. })
    ));
    let err = map_classes::<usize>(&names(&["cat"]), &[]).unwrap_err();
    assert!(err.to_string().contains("available classes: none"), "{err}");
}
