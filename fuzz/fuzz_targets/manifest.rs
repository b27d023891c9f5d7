//! The JSON manifests of saved artefacts: `model.json` (`parse_meta`), `module.json`
//! (`parse_module_meta`), a patched model's `patch.json` (`parse_patch_manifest`) and a
//! composed model's `composition.json` (`parse_composition_manifest`). The
//! first byte picks the kind from [`KINDS`]; what parses is handed to the code that reads it
//! next. Another manifest is one more row in [`KINDS`].
#![no_main]

use std::path::Path;

use candle_core::Device;
use cnn_data::{to_tensor, ImageSet, ImageShape};
use cnnsplit_fuzz::class_names;
use libfuzzer_sys::fuzz_target;

/// Each manifest kind: its file name and the check run on the bytes.
const KINDS: &[(&str, fn(&Path, &[u8]))] = &[
    ("model.json", model_meta),
    ("module.json", module_meta),
    ("patch.json", patch_manifest),
    ("composition.json", composition_manifest),
];

/// One grey 4×4 image, to hand an input format to the tensor conversion.
fn tiny_set() -> ImageSet {
    let shape = ImageShape {
        channels: 1,
        height: 4,
        width: 4,
    };
    ImageSet::new("fuzz", shape, vec![7; 16], vec![0], class_names(2)).expect("a valid set")
}

fn model_meta(path: &Path, bytes: &[u8]) {
    if let Ok(meta) = cnn_models::files::parse_meta(path, bytes) {
        let _ = to_tensor(&tiny_set(), &[0], &meta.input_format, None, &Device::Cpu);
    }
}

fn module_meta(path: &Path, bytes: &[u8]) {
    if let Ok(meta) = cnn_models::module::parse_module_meta(path, bytes) {
        let _ = to_tensor(&tiny_set(), &[0], &meta.input_format, None, &Device::Cpu);
    }
}

fn patch_manifest(path: &Path, bytes: &[u8]) {
    if let Ok(manifest) = composer::parse_patch_manifest(path, bytes) {
        let rule = manifest.rule;
        let _ = rule.patched_scores(&[0.5, -1.0, 2.0], 3, &[0.25]);
    }
}

fn composition_manifest(path: &Path, bytes: &[u8]) {
    if let Ok(manifest) = composer::parse_composition_manifest(path, bytes) {
        // what load_composed does next: each class's module folder inside the composition
        for class in &manifest.classes {
            let _ = class.module_path(Path::new("composed"));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let (name, check) = KINDS[usize::from(pick) % KINDS.len()];
    check(Path::new(name), bytes);
});
