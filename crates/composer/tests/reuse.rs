//! Reuse tasks and artefacts through the library alone (design §8): datasets, class sources,
//! the per-class selection/test cut, and errors that say what is wrong without naming flags.

use candle_core::Device;
use cnn_data::{DatasetKind, DatasetSpec, InputFormat};
use cnn_models::{presets, Model, ModelMeta};
use composer::reuse::{
    check_selection_fraction, CandidateModel, ClassSource, Selector, SourceSubject, TaskDatasets,
};
use composer::{Artifact, ArtifactKind, ComposerError};

fn fashion() -> (DatasetSpec, cnn_data::DatasetSplits) {
    let spec: DatasetSpec = "fashion-mnist".parse().unwrap();
    let data = cnn_data::load_dataset(&spec).unwrap();
    (spec, data)
}

fn task() -> TaskDatasets {
    let (spec, data) = fashion();
    let mut t = TaskDatasets::new();
    t.add("fashion-mnist", spec, data).unwrap();
    t
}

#[test]
fn task_sets_cut_every_class_in_file_order() {
    let task = task();
    let subject = SourceSubject::Composed {
        class: "bags".into(),
    };
    let bag = task.source_of("Bag", None, &subject).unwrap();
    assert_eq!(
        bag,
        ClassSource {
            dataset: 0,
            class: 8
        }
    );
    let trouser = task
        .source_of("Trouser", Some("fashion-mnist"), &subject)
        .unwrap();
    assert_eq!(trouser.class, 1);
    let names = vec!["bags".to_string(), "trousers".to_string()];
    let sets = task.task_sets(&[bag, trouser], &names, 0.2).unwrap();

    let splits = &task.splits()[0];
    let test = &splits.test;
    let count = |labels: &[u16], c: u16| labels.iter().filter(|&&l| l == c).count();
    let quota = |c: u16| (0.2 * count(&test.labels, c) as f64).floor() as usize;
    assert_eq!(sets.selection.len(), quota(8) + quota(1));
    assert_eq!(
        sets.selection.len() + sets.test.len(),
        count(&test.labels, 8) + count(&test.labels, 1)
    );
    assert_eq!(
        sets.train.len(),
        count(&splits.train.labels, 8) + count(&splits.train.labels, 1)
    );
    // task labels are positions in the task; the selection part starts with the first test
    // image of either class, in file order
    assert_eq!(count(&sets.selection.labels, 0), quota(8));
    assert_eq!(
        count(&sets.test.labels, 1),
        count(&test.labels, 1) - quota(1)
    );
    let first = test.labels.iter().position(|&l| l == 8 || l == 1).unwrap();
    let p = test.shape.pixels();
    assert_eq!(
        &sets.selection.images[..p],
        &test.images[first * p..(first + 1) * p]
    );
    assert_eq!(
        sets.selection.labels[0],
        if test.labels[first] == 8 { 0 } else { 1 }
    );
    assert_eq!(sets.test.class_names, names);
}

#[test]
fn errors_say_what_is_wrong_without_naming_flags() {
    let no_flag = |e: &ComposerError| {
        let text = e.to_string();
        assert!(!text.contains("--"), "{text}");
        text
    };
    assert!(check_selection_fraction(0.2).is_ok());
    let e = check_selection_fraction(1.0).unwrap_err();
    assert!(no_flag(&e).contains("within (0, 1), got 1"));

    let mut task = task();
    let (spec, data) = fashion();
    let e = task.add("fashion-mnist", spec, data).unwrap_err();
    assert!(no_flag(&e).contains("a dataset of this kind is already given"));

    let subject = SourceSubject::Offered {
        class: "giraffes".into(),
        dir: "modules/module_3".into(),
    };
    let e = task.source_of("Giraffe", None, &subject).unwrap_err();
    let text = no_flag(&e);
    assert!(
        text.contains("modules/module_3") && text.contains("no given dataset"),
        "{text}"
    );

    // a fraction that leaves no test image
    let e = task
        .task_sets(
            &[ClassSource {
                dataset: 0,
                class: 1,
            }],
            &["t".into()],
            1.0,
        )
        .unwrap_err();
    assert!(no_flag(&e).contains("test part is empty"));

    // a candidate model with another class count than the dataset
    let format = InputFormat::for_dataset(DatasetKind::FashionMnist);
    let model = Model::init(presets::simcnn(0.0625, 1, 3, true), 1, &Device::Cpu).unwrap();
    let meta = ModelMeta::new(
        model.spec().clone(),
        format,
        "fashion-mnist".into(),
        vec!["a".into(), "b".into(), "c".into()],
    );
    let candidate = CandidateModel {
        dir: "three-classes".into(),
        model,
        meta,
    };
    let e = Selector::new(vec![candidate], task).unwrap_err();
    assert!(no_flag(&e).contains("the model has 3 classes"));
}

#[test]
fn artifact_open_loads_a_model_and_explains_an_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    let format = InputFormat::for_dataset(DatasetKind::FashionMnist);
    let model = Model::init(presets::simcnn(0.0625, 3, 2, true), 1, &Device::Cpu).unwrap();
    let meta = ModelMeta::new(
        model.spec().clone(),
        format,
        "fashion-mnist".into(),
        vec!["a".into(), "b".into()],
    );
    let path = dir.path().join("model");
    cnn_models::save_model(&path, &model, &meta).unwrap();
    assert_eq!(ArtifactKind::of(&path), Some(ArtifactKind::Model));
    let opened = Artifact::open(&path, &Device::Cpu).unwrap();
    assert_eq!(opened.kind(), ArtifactKind::Model);
    match opened {
        Artifact::Model(m, meta) => {
            assert_eq!(m.spec(), model.spec());
            assert_eq!(meta.class_names, vec!["a", "b"]);
        }
        other => panic!("expected a model, got {:?}", other.kind()),
    }
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert_eq!(ArtifactKind::of(&empty), None);
    let e = Artifact::open(&empty, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a model directory"), "{e}");
}
