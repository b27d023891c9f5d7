//! MATLAB v5 MAT files: every numeric array through `parse_mat_arrays`, and an SVHN
//! `*_32x32.mat` through `parse_svhn_mat` (the byte half of `read_svhn_mat`).
#![no_main]

use std::path::Path;

use cnn_data::svhn_mat::{parse_mat_arrays, parse_svhn_mat};
use cnn_data::DatasetKind;
use cnnsplit_fuzz::{class_names, convert_first_images};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("train_32x32.mat");
    if let Ok(arrays) = parse_mat_arrays(path, data, &[]) {
        for a in &arrays {
            let values = a.dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
            assert_eq!(values, Some(a.data.len()), "array `{}`", a.name);
        }
    }
    if let Ok(set) = parse_svhn_mat(path, data, "fuzz", &class_names(10)) {
        convert_first_images(&set, DatasetKind::Svhn);
    }
});
