//! CNNSplitter on real (tiny) models: evaluator, importance, sensitivity, the whole pipeline,
//! determinism and resume.

use candle_core::{DType, Device, Tensor};
use cnn_models::{presets, Checkpointing, Model, Resume};
use splitter_ga::{
    composed_masked_accuracy, ga_split, gene_layers_of, kernel_importance, GaConfig, GaError,
    GaSplitConfig, GaSplitEvent, Genome, ModelEvaluator, PopulationEvaluator, STATE_FILE,
};

fn tiny_model(seed: u64) -> Model {
    Model::init(presets::simcnn(0.0625, 1, 3, false), seed, &Device::Cpu).unwrap()
}

fn images(n: usize, seed: u64) -> Tensor {
    let dev = Device::Cpu;
    let mut rng = cnn_models::seeded(seed, cnn_models::Stream::Data);
    let v: Vec<f32> = (0..n * 32 * 32)
        .map(|_| rand::Rng::random_range(&mut rng, -1.0f32..1.0))
        .collect();
    Tensor::from_vec(v, (n, 1, 32, 32), &dev).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn all_ones_chromosome_scores_like_the_model() {
    let model = tiny_model(1);
    let x = images(6, 2);
    let labels = vec![0, 1, 2, 0, 1, 2];
    let genome = Genome::new(gene_layers_of(model.analysis())).unwrap();
    let orders = vec![genome.identity_orders(); 3];
    let mut ev = ModelEvaluator::new(&model, genome.clone(), orders, x.clone(), labels, 4).unwrap();
    let out = ev.evaluate(1, &[genome.all_ones()]).unwrap();
    let logits: Vec<Vec<f32>> = model.forward_eval(&x).unwrap().to_vec2().unwrap();
    let want: Vec<f32> = logits.iter().map(|r| r[1]).collect();
    assert!(max_diff(&out[0].scores, &want) < 1e-5);
    assert_eq!(out[0].ids.len(), model.analysis().total_kernels());
    // evaluating the same chromosome again is answered from the cache
    let again = ev.evaluate(1, &[genome.all_ones()]).unwrap();
    assert_eq!(again[0], out[0]);
    assert_eq!((ev.evaluated, ev.reused), (1, 1));
}

#[test]
fn importance_ranks_a_dead_kernel_last() {
    let model = tiny_model(3);
    let mut tensors = model.tensors().clone();
    let weight = tensors["conv_0.weight"].clone();
    let (o, i, kh, kw) = weight.dims4().unwrap();
    let mut v: Vec<f32> = weight.flatten_all().unwrap().to_vec1().unwrap();
    let per = i * kh * kw;
    v[2 * per..3 * per].iter_mut().for_each(|e| *e = 0.0);
    tensors.insert(
        "conv_0.weight".into(),
        Tensor::from_vec(v, (o, i, kh, kw), &Device::Cpu).unwrap(),
    );
    let mut b: Vec<f32> = tensors["conv_0.bias"].to_vec1().unwrap();
    b[2] = 0.0;
    tensors.insert(
        "conv_0.bias".into(),
        Tensor::from_vec(b, o, &Device::Cpu).unwrap(),
    );
    let model = Model::from_tensors(model.spec().clone(), tensors, &Device::Cpu).unwrap();
    let x = images(9, 4);
    let labels = vec![0, 1, 2, 0, 1, 2, 0, 1, 2];
    // threshold 1.01 cannot be reached: every class falls back to all its images
    let imp = kernel_importance(&model, &x, &labels, 1.01, 4).unwrap();
    assert_eq!(imp.fallback, vec![0, 1, 2]);
    assert_eq!(imp.images, vec![3, 3, 3]);
    for (c, orders) in imp.orders().iter().enumerate() {
        assert_eq!(imp.scores[c][0][2], 0.0);
        let pos = orders[0].iter().position(|&k| k == 2).unwrap();
        for &k in &orders[0][pos + 1..] {
            assert_eq!(imp.scores[c][0][k], 0.0, "only dead kernels rank after it");
        }
        let mut sorted = orders[0].clone();
        sorted.sort();
        assert_eq!(sorted, (0..o).collect::<Vec<_>>());
    }
    let bad = kernel_importance(&model, &x, &[0, 1], 0.9, 4).unwrap_err();
    assert!(matches!(bad, GaError::Count { .. }), "{bad}");
}

#[test]
fn all_ones_masks_compose_to_the_model_accuracy() {
    let model = tiny_model(5);
    let x = images(12, 6);
    let preds: Vec<u32> = model
        .forward_eval(&x)
        .unwrap()
        .argmax(1)
        .unwrap()
        .to_dtype(DType::U32)
        .unwrap()
        .to_vec1()
        .unwrap();
    let labels: Vec<u32> = (0..12).map(|i| i % 3).collect();
    let want = preds.iter().zip(&labels).filter(|(p, l)| p == l).count() as f64 / 12.0;
    let ones: Vec<Vec<bool>> = model
        .analysis()
        .sites
        .iter()
        .map(|s| vec![true; s.channels])
        .collect();
    let acc = composed_masked_accuracy(&model, &x, &labels, &vec![ones; 3], 7).unwrap();
    assert!((acc - want).abs() < 1e-12, "{acc} vs {want}");
}

fn small_config() -> GaSplitConfig {
    let mut ga = GaConfig::scaled_for(3);
    ga.generations = 3;
    ga.population = 6;
    ga.parents = 4;
    ga.keep = 2;
    ga.min_keep = 4;
    ga.max_keep = 20;
    let mut cfg = GaSplitConfig::new(ga);
    cfg.seed = 11;
    cfg.batch_size = 16;
    cfg
}

#[test]
fn same_seed_same_modules_and_resume_continues_exactly() {
    let model = tiny_model(7);
    let x = images(24, 8);
    let labels: Vec<u32> = (0..24).map(|i| i % 3).collect();
    let cfg = small_config();
    let dir = tempfile::tempdir().unwrap();
    let run = |sub: &str, resume: bool, on: &mut dyn FnMut(&GaSplitEvent)| {
        ga_split(
            &model,
            "sha",
            &x,
            &labels,
            &cfg,
            Checkpointing::In {
                dir: &dir.path().join(sub),
                resume: Resume::continue_if(resume),
            },
            on,
        )
    };
    let a = run("a", false, &mut |_| {}).unwrap();
    let b = run("b", false, &mut |_| {}).unwrap();
    assert_eq!(a.masks, b.masks);
    assert_eq!(a.outcome, b.outcome);
    assert_eq!(a.masks.len(), 3);
    assert_eq!(a.outcome.history.len(), 4);
    assert!(a.evaluations.1 > 0, "elites are answered from the cache");

    // keep the state written after generation 1, as if the run had been killed during 2
    let state = dir.path().join("c").join(STATE_FILE);
    let saved = dir.path().join("state-after-1.json");
    let mut on = |ev: &GaSplitEvent| {
        if let GaSplitEvent::GenerationStart { generation: 2, .. } = ev {
            std::fs::copy(&state, &saved).unwrap();
        }
    };
    run("c", false, &mut on).unwrap();
    std::fs::copy(&saved, &state).unwrap();
    let mut generations = Vec::new();
    let resumed = run("c", true, &mut |ev| {
        if let GaSplitEvent::Generation { record, .. } = ev {
            generations.push(record.generation);
        }
    })
    .unwrap();
    assert_eq!(generations, vec![2, 3], "only the missing generations run");
    assert_eq!(resumed.masks, a.masks);
    assert_eq!(resumed.outcome, a.outcome);

    // a resume may stop the run early: generations 0..=1 only, nothing re-run
    std::fs::copy(&saved, &state).unwrap();
    let mut shorter = cfg.clone();
    shorter.ga.generations = 1;
    let mut ran = 0;
    let stopped = ga_split(
        &model,
        "sha",
        &x,
        &labels,
        &shorter,
        Checkpointing::In {
            dir: &dir.path().join("c"),
            resume: Resume::Continue,
        },
        &mut |ev| {
            if let GaSplitEvent::Generation { .. } = ev {
                ran += 1;
            }
        },
    )
    .unwrap();
    assert_eq!(ran, 0);
    assert_eq!(stopped.outcome.history.len(), 2);
    assert_eq!(stopped.outcome.history, a.outcome.history[..2].to_vec());

    // a resume with other settings is refused and names the difference
    let mut other = cfg.clone();
    other.ga.mutation_percent = 10.0;
    let err = ga_split(
        &model,
        "sha",
        &x,
        &labels,
        &other,
        Checkpointing::In {
            dir: &dir.path().join("c"),
            resume: Resume::Continue,
        },
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, GaError::ConfigChanged { .. }), "{err}");
    assert!(err.to_string().contains("mutation_percent"), "{err}");
}

#[test]
fn different_seeds_explore_differently() {
    let model = tiny_model(9);
    let x = images(18, 10);
    let labels: Vec<u32> = (0..18).map(|i| i % 3).collect();
    let mut cfg = small_config();
    cfg.ga.generations = 1;
    let a = ga_split(
        &model,
        "sha",
        &x,
        &labels,
        &cfg,
        Checkpointing::Off,
        &mut |_| {},
    )
    .unwrap();
    cfg.seed = 12;
    let b = ga_split(
        &model,
        "sha",
        &x,
        &labels,
        &cfg,
        Checkpointing::Off,
        &mut |_| {},
    )
    .unwrap();
    assert_ne!(a.outcome.history[0].fitness, b.outcome.history[0].fitness);
}

#[test]
fn checkpoint_files_of_other_versions_are_refused_with_both_versions() {
    let model = tiny_model(7);
    let x = images(12, 8);
    let labels: Vec<u32> = (0..12).map(|i| i % 3).collect();
    let mut cfg = small_config();
    cfg.ga.generations = 1;
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        ga_split(
            &model,
            "sha",
            &x,
            &labels,
            &cfg,
            Checkpointing::In {
                dir: dir.path(),
                resume: Resume::Continue,
            },
            &mut |_| {},
        )
    };
    run().unwrap();
    let edit = |file: &str, pointer: &str, version: u64| {
        let path = dir.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        *v.pointer_mut(pointer).unwrap() = serde_json::json!(version);
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        text
    };
    let prelude = edit(splitter_ga::PRELUDE_FILE, "/format_version", 2);
    let err = run().unwrap_err().to_string();
    assert!(
        err.contains(
            "ga_prelude.json: CNNSplitter checkpoint format version 2 found; this cnnsplit"
        ) && err.contains("reads version 1")
            && err.contains("newer cnnsplit"),
        "{err}"
    );
    std::fs::write(dir.path().join(splitter_ga::PRELUDE_FILE), prelude).unwrap();
    let state = edit(STATE_FILE, "/state/format_version", 0);
    let err = run().unwrap_err().to_string();
    assert!(
        err.contains("ga_state.json: CNNSplitter state format version 0 found")
            && err.contains("reads version 1")
            && err.contains("older cnnsplit"),
        "{err}"
    );
    std::fs::write(dir.path().join(STATE_FILE), &state[..state.len() / 2]).unwrap();
    let err = run().unwrap_err().to_string();
    assert!(err.contains("ga_state.json: not valid JSON"), "{err}");
    // the untouched checkpoint still resumes
    std::fs::write(dir.path().join(STATE_FILE), &state).unwrap();
    run().unwrap();
}
