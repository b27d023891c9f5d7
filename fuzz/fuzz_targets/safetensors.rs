//! safetensors weights through cnnsplit's loading, key and shape checks included: the first
//! byte picks a model file (`parse_safetensors`, then `Model::from_tensors`) or a module
//! file with or without a GradSplitter head (`module_from_parts`), the rest is the file.
//! Whatever loads must run a forward pass with the expected output shape.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use candle_core::Device;
use cnn_models::module::module_from_parts;
use cnn_models::weights::parse_safetensors;
use cnn_models::{Model, ModuleMeta};
use cnnsplit_fuzz::{tiny_module, tiny_spec, zero_input};
use libfuzzer_sys::fuzz_target;

fn module_metas() -> &'static [ModuleMeta; 2] {
    static METAS: OnceLock<[ModuleMeta; 2]> = OnceLock::new();
    METAS.get_or_init(|| [tiny_module(false).meta, tiny_module(true).meta])
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, file)) = data.split_first() else {
        return;
    };
    let cpu = Device::Cpu;
    let wpath = Path::new("model.safetensors");
    match pick % 3 {
        0 => {
            let spec = tiny_spec();
            let analysis = spec.analyse().expect("the tiny spec is valid");
            let Ok(tensors) = parse_safetensors(wpath, file, &analysis, &spec.name, &cpu) else {
                return;
            };
            let model = Model::from_tensors(spec, tensors, &cpu)
                .expect("tensors that passed the key and shape checks build the model");
            let x = zero_input(model.spec());
            let y = model.forward_eval(&x).expect("a loaded model runs");
            assert_eq!(y.dims(), &[1, 3]);
        }
        m => {
            let meta = module_metas()[usize::from(m - 1)].clone();
            let meta_path = Path::new("module.json");
            let Ok(module) = module_from_parts(meta_path, meta, wpath, file, &cpu) else {
                return;
            };
            let x = zero_input(module.model.spec());
            let s = module.score(&x).expect("a loaded module scores");
            assert_eq!(s.dims(), &[1]);
        }
    }
});
