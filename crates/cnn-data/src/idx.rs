//! IDX files (MNIST, Fashion-MNIST, KMNIST, EMNIST), raw or gzip'd.
//!
//! Big-endian: magic `0x00000803` for u8 images followed by the image count, rows and
//! columns as u32, or magic `0x00000801` for u8 labels followed by the label count; then the
//! payload, one byte per pixel or label.

use std::path::Path;

use crate::util::{decode_maybe_gzip, read_maybe_gzip};
use crate::{DataError, ImageSet, ImageShape};

/// Magic number of an IDX file of u8 images (3 dimensions).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of u8 labels (1 dimension).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// The contents of an IDX image file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Rows (height) of each image.
    pub rows: usize,
    /// Columns (width) of each image.
    pub cols: usize,
    /// `count · rows · cols` pixels, row-major per image.
    pub pixels: Vec<u8>,
}

fn be_u32(bytes: &[u8], at: usize) -> Option<usize> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

fn check_magic(path: &Path, bytes: &[u8], want: u32, what: &str) -> Result<(), DataError> {
    let magic = be_u32(bytes, 0).ok_or_else(|| {
        DataError::format(
            path,
            format!("file too short for an IDX header ({} bytes)", bytes.len()),
        )
    })?;
    if magic != want as usize {
        return Err(DataError::format(
            path,
            format!("wrong IDX magic 0x{magic:08x}, expected 0x{want:08x} ({what})"),
        ));
    }
    Ok(())
}

fn check_payload(path: &Path, have: usize, want: Option<usize>) -> Result<usize, DataError> {
    let want = want.ok_or_else(|| DataError::format(path, "IDX dimensions overflow"))?;
    if have < want {
        return Err(DataError::format(
            path,
            format!("truncated payload: {have} bytes, header announces {want}"),
        ));
    }
    if have > want {
        return Err(DataError::format(
            path,
            format!(
                "{} unexpected trailing bytes after the payload",
                have - want
            ),
        ));
    }
    Ok(want)
}

/// Parses the bytes of an IDX image file; `path` is used in error messages only.
pub fn parse_idx_images(path: &Path, bytes: &[u8]) -> Result<IdxImages, DataError> {
    check_magic(path, bytes, IMAGES_MAGIC, "u8 images")?;
    let (Some(count), Some(rows), Some(cols)) =
        (be_u32(bytes, 4), be_u32(bytes, 8), be_u32(bytes, 12))
    else {
        return Err(DataError::format(path, "truncated IDX image header"));
    };
    if rows == 0 || cols == 0 {
        return Err(DataError::format(
            path,
            format!("IDX header announces empty {rows}x{cols} images"),
        ));
    }
    let want = count.checked_mul(rows).and_then(|v| v.checked_mul(cols));
    check_payload(path, bytes.len() - 16, want)?;
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels: bytes[16..].to_vec(),
    })
}

/// Parses the bytes of an IDX label file; `path` is used in error messages only.
pub fn parse_idx_labels(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, DataError> {
    check_magic(path, bytes, LABELS_MAGIC, "u8 labels")?;
    let count =
        be_u32(bytes, 4).ok_or_else(|| DataError::format(path, "truncated IDX label header"))?;
    check_payload(path, bytes.len() - 8, Some(count))?;
    Ok(bytes[8..].to_vec())
}

/// Reads an IDX image file (raw or gzip'd).
pub fn read_idx_images(path: &Path) -> Result<IdxImages, DataError> {
    parse_idx_images(path, &read_maybe_gzip(path)?)
}

/// Reads an IDX label file (raw or gzip'd).
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    parse_idx_labels(path, &read_maybe_gzip(path)?)
}

/// Reads a pair of IDX files into a grey [`ImageSet`], checking that the counts agree and
/// that every label is below `class_names.len()`.
pub fn read_idx_set(
    images_path: &Path,
    labels_path: &Path,
    name: &str,
    class_names: &[String],
) -> Result<ImageSet, DataError> {
    let images = std::fs::read(images_path).map_err(|e| DataError::io(images_path, e))?;
    let labels = std::fs::read(labels_path).map_err(|e| DataError::io(labels_path, e))?;
    parse_idx_set(
        (images_path, images),
        (labels_path, labels),
        name,
        class_names,
    )
}

/// Builds a grey [`ImageSet`] from the bytes of an IDX image file and an IDX label file,
/// each raw or gzip'd and given with its path (used in error messages only), with the
/// checks of [`read_idx_set`].
pub fn parse_idx_set(
    images: (&Path, Vec<u8>),
    labels: (&Path, Vec<u8>),
    name: &str,
    class_names: &[String],
) -> Result<ImageSet, DataError> {
    let (images_path, labels_path) = (images.0, labels.0);
    let images = parse_idx_images(images_path, &decode_maybe_gzip(images_path, images.1)?)?;
    let labels = parse_idx_labels(labels_path, &decode_maybe_gzip(labels_path, labels.1)?)?;
    if images.count != labels.len() {
        return Err(DataError::format(
            labels_path,
            format!(
                "count mismatch: {} labels but {} images in {}",
                labels.len(),
                images.count,
                images_path.display()
            ),
        ));
    }
    if let Some((i, &l)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| usize::from(l) >= class_names.len())
    {
        return Err(DataError::format(
            labels_path,
            format!(
                "label {l} of item {i} is out of range ({} classes)",
                class_names.len()
            ),
        ));
    }
    Ok(ImageSet {
        name: name.to_string(),
        shape: ImageShape {
            channels: 1,
            height: images.rows,
            width: images.cols,
        },
        images: images.pixels,
        labels: labels.into_iter().map(u16::from).collect(),
        class_names: class_names.to_vec(),
    })
}

/// Encodes u8 images as an (uncompressed) IDX image file.
///
/// Fails when `pixels.len() != count · rows · cols` or a dimension exceeds `u32`.
pub fn encode_idx_images(
    count: usize,
    rows: usize,
    cols: usize,
    pixels: &[u8],
) -> Result<Vec<u8>, DataError> {
    let to_u32 = |v: usize| {
        u32::try_from(v)
            .map_err(|_| DataError::InvalidArgument(format!("IDX dimension {v} exceeds u32")))
    };
    if count.checked_mul(rows).and_then(|v| v.checked_mul(cols)) != Some(pixels.len()) {
        return Err(DataError::InvalidArgument(format!(
            "{} pixels do not make {count} images of {rows}x{cols}",
            pixels.len()
        )));
    }
    let mut out = Vec::with_capacity(16 + pixels.len());
    out.extend_from_slice(&IMAGES_MAGIC.to_be_bytes());
    for v in [count, rows, cols] {
        out.extend_from_slice(&to_u32(v)?.to_be_bytes());
    }
    out.extend_from_slice(pixels);
    Ok(out)
}

/// Encodes u8 labels as an (uncompressed) IDX label file.
pub fn encode_idx_labels(labels: &[u8]) -> Result<Vec<u8>, DataError> {
    let n = u32::try_from(labels.len()).map_err(|_| {
        DataError::InvalidArgument(format!("{} labels exceed the IDX limit", labels.len()))
    })?;
    let mut out = Vec::with_capacity(8 + labels.len());
    out.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(labels);
    Ok(out)
}
