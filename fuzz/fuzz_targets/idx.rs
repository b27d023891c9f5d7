//! IDX image and label files, raw or gzip'd, through `parse_idx_set` (the byte half of
//! `read_idx_set`): the input is cut into an image file and a label file.
#![no_main]

use std::path::Path;

use cnn_data::{idx::parse_idx_set, DatasetKind};
use cnnsplit_fuzz::{class_names, convert_first_images, split_in_two};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (images, labels) = split_in_two(data);
    let classes = class_names(10);
    let parsed = parse_idx_set(
        (Path::new("images-idx3-ubyte"), images.to_vec()),
        (Path::new("labels-idx1-ubyte"), labels.to_vec()),
        "fuzz",
        &classes,
    );
    if let Ok(set) = parsed {
        convert_first_images(&set, DatasetKind::FashionMnist);
    }
});
