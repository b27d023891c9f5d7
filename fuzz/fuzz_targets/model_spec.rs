//! `ModelSpec` JSON: parsing and validation (`analyse`). A spec that validates and is small
//! enough to build here must build, run a forward pass with the output shape it announced,
//! and hold exactly the parameters the analysis counted.
#![no_main]

use candle_core::Device;
use cnn_models::spec::TensorRole;
use cnn_models::{Model, ModelSpec};
use cnnsplit_fuzz::zero_input;
use libfuzzer_sys::fuzz_target;

/// Specs within these bounds are built and run; larger ones are only validated.
const BUILD_MAX_PARAMS: u64 = 100_000;
const BUILD_MAX_ACTIVATIONS: u64 = 200_000;
const BUILD_MAX_MACS: u64 = 5_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<ModelSpec>(data) else {
        return;
    };
    let Ok(analysis) = spec.analyse() else {
        return;
    };
    if analysis.params() > BUILD_MAX_PARAMS
        || analysis.activation_elements > BUILD_MAX_ACTIVATIONS
        || analysis.macs() > BUILD_MAX_MACS
    {
        return;
    }
    let model = Model::init(spec.clone(), 0, &Device::Cpu).expect("a validated spec builds");
    let params: usize = analysis
        .tensor_shapes()
        .iter()
        .filter(|(_, _, role)| *role == TensorRole::Param)
        .map(|(k, _, _)| {
            model
                .tensor(k)
                .expect("every analysed tensor exists")
                .elem_count()
        })
        .sum();
    assert_eq!(params as u64, analysis.params());
    let y = model
        .forward_eval(&zero_input(&spec))
        .expect("a validated spec runs");
    assert_eq!(y.dims(), &[1, spec.num_classes]);
});
