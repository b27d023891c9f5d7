//! SVHN cropped digits (`train_32x32.mat`, `test_32x32.mat`) and a small MATLAB v5 MAT-file
//! parser for numeric arrays.
//!
//! A MAT v5 file is a 128-byte header (text, subsystem offset, version `0x0100`, endian tag
//! `IM` for little-endian or `MI` for big-endian) followed by data elements. Each element has
//! an 8-byte tag (type, byte count) or, in the *small data element* format, a 4-byte tag with
//! up to 4 bytes of data packed beside it; elements are padded to 8 bytes. `miCOMPRESSED`
//! elements hold one zlib-compressed element; `miMATRIX` elements hold array flags,
//! dimensions, name and the real (and imaginary) parts.

use std::io::Read;
use std::path::Path;

use flate2::read::ZlibDecoder;

use crate::{DataError, ImageSet, ImageShape};

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;

/// MATLAB class id of double arrays.
pub const MX_DOUBLE_CLASS: u8 = 6;
/// MATLAB class id of uint8 arrays.
pub const MX_UINT8_CLASS: u8 = 9;

/// Values of a numeric MAT array, column-major.
#[derive(Clone, Debug, PartialEq)]
pub enum MatData {
    /// Stored as `miUINT8`: the bytes as they are.
    U8(Vec<u8>),
    /// Any other numeric storage type, converted to f64.
    F64(Vec<f64>),
}

impl MatData {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            MatData::U8(v) => v.len(),
            MatData::F64(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `i` as f64.
    fn get(&self, i: usize) -> f64 {
        match self {
            MatData::U8(v) => f64::from(v[i]),
            MatData::F64(v) => v[i],
        }
    }
}

/// A numeric, real MATLAB array read from a MAT v5 file.
#[derive(Clone, Debug, PartialEq)]
pub struct MatArray {
    /// Variable name.
    pub name: String,
    /// MATLAB class id (6 = double, 9 = uint8, …).
    pub class: u8,
    /// Dimensions, MATLAB order.
    pub dims: Vec<usize>,
    /// Real part, column-major.
    pub data: MatData,
}

struct Reader<'a> {
    path: &'a Path,
    buf: &'a [u8],
    pos: usize,
    be: bool,
}

impl<'a> Reader<'a> {
    fn u32_at(&self, at: usize) -> Option<u32> {
        let b: [u8; 4] = self.buf.get(at..at + 4)?.try_into().ok()?;
        Some(if self.be {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn err(&self, msg: impl std::fmt::Display) -> DataError {
        DataError::format(self.path, format!("MAT file: {msg}"))
    }

    /// Next data element as (type, data bytes); `None` at the end of the buffer.
    fn next(&mut self) -> Result<Option<(u32, &'a [u8])>, DataError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let start = self.pos;
        let (Some(w0), Some(w1)) = (self.u32_at(start), self.u32_at(start + 4)) else {
            return Err(self.err(format!("truncated data element tag at byte {start}")));
        };
        if w0 >> 16 != 0 {
            // Small data element: byte count in the upper half, type in the lower half.
            let n = (w0 >> 16) as usize;
            let ty = w0 & 0xffff;
            if n > 4 {
                return Err(self.err(format!("bad small data element size {n} at byte {start}")));
            }
            self.pos = start + 8;
            return Ok(Some((ty, &self.buf[start + 4..start + 4 + n])));
        }
        let n = w1 as usize;
        let data = self
            .buf
            .get(start + 8..)
            .and_then(|rest| rest.get(..n))
            .ok_or_else(|| {
                self.err(format!(
                    "truncated data element at byte {start}: {n} bytes announced, {} left",
                    self.buf.len().saturating_sub(start + 8)
                ))
            })?;
        let mut end = start + 8 + n;
        if w0 != MI_COMPRESSED {
            end = end.div_ceil(8) * 8;
        }
        self.pos = end.min(self.buf.len());
        Ok(Some((w0, data)))
    }
}

fn elem_size(ty: u32) -> Option<usize> {
    Some(match ty {
        MI_INT8 | MI_UINT8 => 1,
        MI_INT16 | MI_UINT16 => 2,
        MI_INT32 | MI_UINT32 | MI_SINGLE => 4,
        MI_DOUBLE | MI_INT64 | MI_UINT64 => 8,
        _ => return None,
    })
}

fn decode_numeric(r: &Reader<'_>, ty: u32, data: &[u8]) -> Result<MatData, DataError> {
    if ty == MI_UINT8 {
        return Ok(MatData::U8(data.to_vec()));
    }
    let size = elem_size(ty).ok_or_else(|| r.err(format!("unsupported numeric data type {ty}")))?;
    if !data.len().is_multiple_of(size) {
        return Err(r.err(format!(
            "numeric data of {} bytes is not a multiple of the element size {size}",
            data.len()
        )));
    }
    let be = r.be;
    let out = data
        .chunks_exact(size)
        .map(|c| {
            macro_rules! num {
                ($t:ty) => {{
                    let a = c.try_into().unwrap_or([0; std::mem::size_of::<$t>()]);
                    if be {
                        <$t>::from_be_bytes(a)
                    } else {
                        <$t>::from_le_bytes(a)
                    }
                }};
            }
            match ty {
                MI_INT8 => f64::from(c[0] as i8),
                MI_INT16 => f64::from(num!(i16)),
                MI_UINT16 => f64::from(num!(u16)),
                MI_INT32 => f64::from(num!(i32)),
                MI_UINT32 => f64::from(num!(u32)),
                MI_SINGLE => f64::from(num!(f32)),
                MI_DOUBLE => num!(f64),
                MI_INT64 => num!(i64) as f64,
                _ => num!(u64) as f64,
            }
        })
        .collect();
    Ok(MatData::F64(out))
}

/// Parses the contents of an `miMATRIX` element; `None` for non-numeric or complex arrays.
fn parse_matrix(
    path: &Path,
    data: &[u8],
    be: bool,
    wanted: &[&str],
) -> Result<Option<MatArray>, DataError> {
    let mut r = Reader {
        path,
        buf: data,
        pos: 0,
        be,
    };
    let flags = match r.next()? {
        Some((MI_UINT32, f)) if f.len() >= 4 => {
            let w: [u8; 4] = f[..4].try_into().unwrap_or_default();
            if be {
                u32::from_be_bytes(w)
            } else {
                u32::from_le_bytes(w)
            }
        }
        Some(_) => return Err(r.err("array flags sub-element missing or malformed")),
        None => return Err(r.err("empty matrix element")),
    };
    let class = (flags & 0xff) as u8;
    let complex = flags & 0x0800 != 0;
    let dims = match r.next()? {
        Some((MI_INT32, d)) if d.len().is_multiple_of(4) => {
            let mut dims = Vec::with_capacity(d.len() / 4);
            for c in d.chunks_exact(4) {
                let w: [u8; 4] = c.try_into().unwrap_or_default();
                let v = if be {
                    i32::from_be_bytes(w)
                } else {
                    i32::from_le_bytes(w)
                };
                dims.push(
                    usize::try_from(v).map_err(|_| r.err(format!("negative dimension {v}")))?,
                );
            }
            dims
        }
        _ => return Err(r.err("dimensions sub-element missing or malformed")),
    };
    let name = match r.next()? {
        Some((MI_INT8, n)) => String::from_utf8_lossy(n).into_owned(),
        _ => return Err(r.err("array name sub-element missing or malformed")),
    };
    if !wanted.is_empty() && !wanted.contains(&name.as_str()) {
        return Ok(None);
    }
    if !(6..=15).contains(&class) || complex {
        return Ok(None);
    }
    let (ty, real) = r
        .next()?
        .ok_or_else(|| r.err(format!("variable `{name}` has no data")))?;
    let values = decode_numeric(&r, ty, real)?;
    let expected = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if expected != Some(values.len()) {
        return Err(r.err(format!(
            "variable `{name}` has {} values but dimensions {dims:?}",
            values.len()
        )));
    }
    Ok(Some(MatArray {
        name,
        class,
        dims,
        data: values,
    }))
}

/// Reads the real numeric arrays of a MAT v5 file whose names are in `wanted` (all numeric
/// arrays when `wanted` is empty), in file order. Other variables are skipped.
pub fn read_mat_arrays(path: &Path, wanted: &[&str]) -> Result<Vec<MatArray>, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_mat_arrays(path, &bytes, wanted)
}

/// Parses MAT v5 bytes like [`read_mat_arrays`]; `path` is used in error messages only.
pub fn parse_mat_arrays(
    path: &Path,
    bytes: &[u8],
    wanted: &[&str],
) -> Result<Vec<MatArray>, DataError> {
    if bytes.len() < 128 {
        return Err(DataError::format(
            path,
            format!("MAT file: truncated header ({} of 128 bytes)", bytes.len()),
        ));
    }
    let be = match &bytes[126..128] {
        b"IM" => false,
        b"MI" => true,
        t => {
            return Err(DataError::format(
                path,
                format!("not a MATLAB v5 MAT file (endian tag {t:02x?})"),
            ))
        }
    };
    let version = if be {
        u16::from_be_bytes([bytes[124], bytes[125]])
    } else {
        u16::from_le_bytes([bytes[124], bytes[125]])
    };
    if version != 0x0100 {
        return Err(DataError::format(
            path,
            format!(
                "unsupported MAT file version 0x{version:04x} (v7.3/HDF5 files are not read; \
                 save with -v7 or earlier)"
            ),
        ));
    }
    let mut r = Reader {
        path,
        buf: &bytes[128..],
        pos: 0,
        be,
    };
    let mut out = Vec::new();
    while let Some((ty, data)) = r.next()? {
        let found = match ty {
            MI_MATRIX => parse_matrix(path, data, be, wanted)?,
            MI_COMPRESSED => {
                let mut inflated = Vec::with_capacity(data.len() * 4);
                ZlibDecoder::new(data)
                    .read_to_end(&mut inflated)
                    .map_err(|e| r.err(format!("corrupt compressed element: {e}")))?;
                let mut inner = Reader {
                    path,
                    buf: &inflated,
                    pos: 0,
                    be,
                };
                match inner.next()? {
                    Some((MI_MATRIX, m)) => parse_matrix(path, m, be, wanted)?,
                    _ => None,
                }
            }
            _ => None,
        };
        out.extend(found);
    }
    Ok(out)
}

/// Reads an SVHN `*_32x32.mat` file: `X` (H×W×C×N uint8, column-major) becomes NCHW RGB
/// images, `y` (N labels 1..10, double or integer) becomes labels with 10 mapped to 0.
pub fn read_svhn_mat(
    path: &Path,
    name: &str,
    class_names: &[String],
) -> Result<ImageSet, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_svhn_mat(path, &bytes, name, class_names)
}

/// Builds an [`ImageSet`] from the bytes of an SVHN `*_32x32.mat` file like
/// [`read_svhn_mat`]; `path` is used in error messages only.
pub fn parse_svhn_mat(
    path: &Path,
    bytes: &[u8],
    name: &str,
    class_names: &[String],
) -> Result<ImageSet, DataError> {
    let arrays = parse_mat_arrays(path, bytes, &["X", "y"])?;
    let x = arrays
        .iter()
        .find(|a| a.name == "X")
        .ok_or_else(|| DataError::format(path, "MAT file: numeric variable `X` not found"))?;
    let y = arrays
        .iter()
        .find(|a| a.name == "y")
        .ok_or_else(|| DataError::format(path, "MAT file: numeric variable `y` not found"))?;
    let (h, w, c, n) = match x.dims[..] {
        [h, w, c, n] => (h, w, c, n),
        [h, w, c] => (h, w, c, 1),
        _ => {
            return Err(DataError::format(
                path,
                format!(
                    "MAT file: `X` has dimensions {:?}, expected H×W×C×N",
                    x.dims
                ),
            ))
        }
    };
    if h == 0 || w == 0 {
        return Err(DataError::format(
            path,
            format!("MAT file: `X` has dimensions {:?}: empty images", x.dims),
        ));
    }
    if c != 1 && c != 3 {
        return Err(DataError::format(
            path,
            format!("MAT file: `X` has {c} channels, expected 1 or 3"),
        ));
    }
    if y.data.len() != n {
        return Err(DataError::format(
            path,
            format!(
                "MAT file: `y` has {} labels but `X` holds {n} images",
                y.data.len()
            ),
        ));
    }
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let v = y.data.get(i);
        let ok = v.fract() == 0.0 && (0.0..=10.0).contains(&v);
        let l = if v == 10.0 { 0 } else { v as usize };
        if !ok || l >= class_names.len() {
            return Err(DataError::format(
                path,
                format!("MAT file: label {v} of image {i} is out of range"),
            ));
        }
        labels.push(l as u16);
    }
    let plane = h * w;
    let per = plane * c;
    let mut images = vec![0u8; per * n];
    match &x.data {
        MatData::U8(src) => {
            for (img, out) in images.chunks_exact_mut(per).enumerate() {
                let base = img * per;
                for ch in 0..c {
                    for col in 0..w {
                        let s =
                            &src[base + ch * plane + col * h..base + ch * plane + (col + 1) * h];
                        for (row, &v) in s.iter().enumerate() {
                            out[ch * plane + row * w + col] = v;
                        }
                    }
                }
            }
        }
        MatData::F64(src) => {
            for (img, out) in images.chunks_exact_mut(per).enumerate() {
                let base = img * per;
                for ch in 0..c {
                    for col in 0..w {
                        for row in 0..h {
                            let v = src[base + ch * plane + col * h + row];
                            if !(0.0..=255.0).contains(&v) || v.fract() != 0.0 {
                                return Err(DataError::format(
                                    path,
                                    format!(
                                        "MAT file: pixel value {v} of image {img} is not a byte"
                                    ),
                                ));
                            }
                            out[ch * plane + row * w + col] = v as u8;
                        }
                    }
                }
            }
        }
    }
    Ok(ImageSet {
        name: name.to_string(),
        shape: ImageShape {
            channels: c,
            height: h,
            width: w,
        },
        images,
        labels,
        class_names: class_names.to_vec(),
    })
}
