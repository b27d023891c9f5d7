//! What `PatchJob` refuses (design §7, §13): a collapsed module unless forced, a calibration
//! range with max ≤ min whatever, and percentile calibration read off the module file.

use std::path::Path;

use candle_core::Device;
use cnn_data::{DatasetKind, InputFormat};
use cnn_models::module::{build_module, Collapse, Module};
use cnn_models::{presets, Model, ModelMeta, ModuleSource};
use composer::{
    module_calibration, Calibration, CalibrationKind, ComposerError, PatchConfig, PatchJob,
};

fn weak_and_module() -> (Model, ModelMeta, Module) {
    let dev = Device::Cpu;
    let format = InputFormat::for_dataset(DatasetKind::FashionMnist);
    let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let strong = Model::init(presets::simcnn(0.0625, 3, 3, false), 1, &dev).unwrap();
    let weak = Model::init(presets::simcnn(0.0625, 3, 3, true), 2, &dev).unwrap();
    let meta = ModelMeta::new(weak.spec().clone(), format.clone(), "toy".into(), names);
    let masks: Vec<Vec<bool>> = strong
        .analysis()
        .sites
        .iter()
        .map(|s| vec![true; s.channels])
        .collect();
    let mut module = build_module(
        &strong,
        "strong",
        &masks,
        ModuleSource::Logit,
        1,
        "b",
        format,
        None,
    )
    .unwrap();
    module.calibrate_from_scores(&(0..=10).map(|v| v as f32).collect::<Vec<_>>());
    (weak, meta, module)
}

fn job<'a>(
    weak: &'a Model,
    meta: &'a ModelMeta,
    module: &'a Module,
    cfg: &PatchConfig,
) -> composer::Result<PatchJob<'a>> {
    PatchJob::new(
        Path::new("weak"),
        (weak, meta),
        Path::new("decomp/module_1"),
        module,
        cfg,
    )
}

#[test]
fn a_collapsed_module_patches_only_when_forced() {
    let (weak, meta, mut module) = weak_and_module();
    assert!(job(&weak, &meta, &module, &PatchConfig::default()).is_ok());
    module.meta.collapsed = vec![Collapse::EmptyLayer { convs: vec![2] }, Collapse::ZeroF1];
    let err = job(&weak, &meta, &module, &PatchConfig::default()).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ComposerError::CollapsedModule { .. }),
        "{text}"
    );
    for part in [
        "module decomp/module_1 (class 1 `b`) is collapsed",
        "convs [2] kept no kernel",
        "F1 = 0",
    ] {
        assert!(text.contains(part), "{text}");
    }
    let forced = PatchConfig {
        force: true,
        ..Default::default()
    };
    let j = job(&weak, &meta, &module, &forced).unwrap();
    assert_eq!(
        j.rule.calibration,
        Calibration::MinMax {
            min: 0.0,
            max: 10.0
        }
    );
}

#[test]
fn a_calibration_range_with_max_not_above_min_is_an_error_naming_the_module_even_forced() {
    let (weak, meta, mut module) = weak_and_module();
    module.meta.calibration = Some((0.25, 0.25));
    module.meta.collapsed = vec![Collapse::ConstantScore];
    let forced = PatchConfig {
        force: true,
        ..Default::default()
    };
    let err = job(&weak, &meta, &module, &forced).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ComposerError::DegenerateCalibration { .. }),
        "{text}"
    );
    assert!(
        text.contains("module decomp/module_1 (class 1 `b`)") && text.contains("max ≤ min"),
        "{text}"
    );
    // the raw score needs no range
    let raw = PatchConfig {
        calibration: CalibrationKind::Raw,
        ..forced
    };
    assert!(job(&weak, &meta, &module, &raw).is_ok());
}

#[test]
fn percentile_calibration_reads_the_stored_percentiles() {
    let (_, _, mut module) = weak_and_module();
    // scores 0..=10: the p-th percentile is p / 10
    let cal =
        module_calibration(&module, CalibrationKind::Percentile { lo: 5.0, hi: 95.0 }).unwrap();
    match cal {
        Calibration::Percentile { p_lo, p_hi, lo, hi } => {
            assert_eq!((p_lo, p_hi), (5.0, 95.0));
            assert!(
                (lo - 0.5).abs() < 1e-6 && (hi - 9.5).abs() < 1e-6,
                "{lo} {hi}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        module_calibration(&module, CalibrationKind::Percentile { lo: 50.0, hi: 10.0 }),
        Err(ComposerError::InvalidPercentile { .. })
    ));
    // a file without percentiles (an older cnnsplit) says so
    module.meta.calibration_percentiles.clear();
    assert!(matches!(
        module_calibration(&module, CalibrationKind::Percentile { lo: 5.0, hi: 95.0 }),
        Err(ComposerError::NoCalibrationPercentiles { .. })
    ));
}
