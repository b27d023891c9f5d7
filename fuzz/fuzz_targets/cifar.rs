//! CIFAR-10 and CIFAR-100 binary batches through `parse_cifar_bytes` (the byte half of
//! `read_cifar_file`): the first byte picks the layout, the rest is the file.
#![no_main]

use std::path::Path;

use cnn_data::cifar::{parse_cifar_bytes, CifarLayout, CIFAR_SHAPE};
use cnn_data::{DatasetKind, ImageSet};
use cnnsplit_fuzz::{class_names, convert_first_images};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, file)) = data.split_first() else {
        return;
    };
    let (layout, classes) = match pick % 3 {
        0 => (CifarLayout::Cifar10, 10),
        1 => (CifarLayout::Cifar100Fine, 100),
        _ => (CifarLayout::Cifar100Coarse, 20),
    };
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    let path = Path::new("data_batch_1.bin");
    if parse_cifar_bytes(path, file, layout, classes, &mut images, &mut labels).is_ok() {
        let set = ImageSet::new("fuzz", CIFAR_SHAPE, images, labels, class_names(classes))
            .expect("records a CIFAR reader accepted form an image set");
        convert_first_images(&set, DatasetKind::Cifar10);
    }
});
