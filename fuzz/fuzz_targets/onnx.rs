//! ONNX models: protobuf decoding, the graph walk into a `ModelSpec` and its tensors
//! (`onnx_import::parse_onnx`). A file the importer accepts and that is small enough to build
//! here must build a model (the converter's tensors match the spec it wrote) that runs a
//! forward pass with one logit per class.
#![no_main]

use std::path::Path;

use candle_core::Device;
use cnnsplit_fuzz::zero_input;
use libfuzzer_sys::fuzz_target;

/// Imports within these bounds are built and run; larger ones are only converted.
const BUILD_MAX_PARAMS: u64 = 100_000;
const BUILD_MAX_ACTIVATIONS: u64 = 200_000;
const BUILD_MAX_MACS: u64 = 5_000_000;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.onnx");
    let Ok(imported) = onnx_import::parse_onnx(path, data) else {
        return;
    };
    let Ok(analysis) = imported.spec.analyse() else {
        return;
    };
    if analysis.params() > BUILD_MAX_PARAMS
        || analysis.activation_elements > BUILD_MAX_ACTIVATIONS
        || analysis.macs() > BUILD_MAX_MACS
    {
        return;
    }
    let spec = imported.spec.clone();
    let model = imported
        .into_model(path, &Device::Cpu)
        .expect("a converted spec that validates builds from the converted tensors");
    let y = model
        .forward_eval(&zero_input(&spec))
        .expect("an imported model runs");
    assert_eq!(y.dims(), &[1, spec.num_classes]);
});
