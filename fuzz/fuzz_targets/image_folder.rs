//! Image files through the image-folder loader's decoding half (`DecodedImages`, which
//! `read_image_folder` feeds file by file): the first byte picks each file's extension and
//! whether a size is expected, the rest is cut into two image files of two classes.
#![no_main]

use std::path::Path;

use cnn_data::image_folder::DecodedImages;
use cnn_data::DatasetKind;
use cnnsplit_fuzz::{class_names, convert_first_images, split_in_two};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (first, second) = split_in_two(rest);
    let name = |bit: u8, stem: &str| {
        let ext = if flags & bit == 0 { "png" } else { "jpg" };
        format!("train/{stem}/{stem}.{ext}")
    };
    let expect = (flags & 4 != 0).then_some((8, 8));
    let mut images = DecodedImages::new(expect);
    if images
        .add_encoded(Path::new(&name(1, "c0")), first, 0)
        .is_err()
    {
        return;
    }
    if !second.is_empty() {
        let _ = images.add_encoded(Path::new(&name(2, "c1")), second, 1);
    }
    let set = images
        .into_image_set(Path::new("train"), "fuzz", &class_names(2))
        .expect("decoded images form an image set");
    convert_first_images(&set, DatasetKind::ImageFolder);
});
