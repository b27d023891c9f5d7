//! CIFAR-10 and CIFAR-100 binary versions.
//!
//! A CIFAR-10 record is 1 label byte then 3,072 pixel bytes (1,024 R, 1,024 G, 1,024 B, each
//! row-major 32×32); a CIFAR-100 record has 2 label bytes (coarse, fine) before the pixels.

use std::path::Path;

use crate::{DataError, ImageSet, ImageShape};

/// Pixel bytes of one CIFAR image.
pub const CIFAR_PIXELS: usize = 3 * 32 * 32;
/// Bytes of one CIFAR-10 record.
pub const CIFAR10_RECORD: usize = 1 + CIFAR_PIXELS;
/// Bytes of one CIFAR-100 record.
pub const CIFAR100_RECORD: usize = 2 + CIFAR_PIXELS;

/// Shape of CIFAR images.
pub const CIFAR_SHAPE: ImageShape = ImageShape {
    channels: 3,
    height: 32,
    width: 32,
};

/// Which label of a record to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CifarLayout {
    /// CIFAR-10: one label byte.
    Cifar10,
    /// CIFAR-100 fine labels (the second of the two label bytes).
    Cifar100Fine,
    /// CIFAR-100 coarse (superclass) labels (the first label byte).
    Cifar100Coarse,
}

impl CifarLayout {
    fn record(self) -> usize {
        match self {
            CifarLayout::Cifar10 => CIFAR10_RECORD,
            _ => CIFAR100_RECORD,
        }
    }
}

/// Appends the images and labels of one CIFAR binary file to `images`/`labels`, checking the
/// file length and that each label is below `num_classes`.
pub fn read_cifar_file(
    path: &Path,
    layout: CifarLayout,
    num_classes: usize,
    images: &mut Vec<u8>,
    labels: &mut Vec<u16>,
) -> Result<(), DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_cifar_bytes(path, &bytes, layout, num_classes, images, labels)
}

/// Appends the records of the bytes of one CIFAR binary file to `images`/`labels`, with the
/// checks of [`read_cifar_file`]; `path` is used in error messages only.
pub fn parse_cifar_bytes(
    path: &Path,
    bytes: &[u8],
    layout: CifarLayout,
    num_classes: usize,
    images: &mut Vec<u8>,
    labels: &mut Vec<u16>,
) -> Result<(), DataError> {
    let rec = layout.record();
    if bytes.is_empty() || !bytes.len().is_multiple_of(rec) {
        return Err(DataError::format(
            path,
            format!(
                "length {} bytes is not a positive multiple of the {rec}-byte record size",
                bytes.len()
            ),
        ));
    }
    images.reserve(bytes.len() / rec * CIFAR_PIXELS);
    for (i, r) in bytes.chunks_exact(rec).enumerate() {
        let label = match layout {
            CifarLayout::Cifar10 | CifarLayout::Cifar100Coarse => r[0],
            CifarLayout::Cifar100Fine => r[1],
        };
        if usize::from(label) >= num_classes {
            return Err(DataError::format(
                path,
                format!("label {label} of record {i} is out of range ({num_classes} classes)"),
            ));
        }
        labels.push(u16::from(label));
        images.extend_from_slice(&r[rec - CIFAR_PIXELS..]);
    }
    Ok(())
}

/// Reads several CIFAR binary files, in order, into one [`ImageSet`].
pub fn read_cifar_files(
    paths: &[&Path],
    layout: CifarLayout,
    name: &str,
    class_names: &[String],
) -> Result<ImageSet, DataError> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for p in paths {
        read_cifar_file(p, layout, class_names.len(), &mut images, &mut labels)?;
    }
    Ok(ImageSet {
        name: name.to_string(),
        shape: CIFAR_SHAPE,
        images,
        labels,
        class_names: class_names.to_vec(),
    })
}
