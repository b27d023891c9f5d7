//! Constant tensors of a graph: initialisers and the values of `Constant` nodes (and of
//! `Identity`/`Cast` nodes applied to constants, which exporters use to share one tensor under
//! several names), decoded to f32 or i64 with every size checked before allocation.

use std::path::Path;

use crate::error::{OnnxError, Result};
use crate::proto::{data_type, TensorProto};

/// Largest number of values one constant may hold (the limit of one model tensor).
const MAX_CONSTANT_ELEMENTS: usize = cnn_models::spec::MAX_TENSOR_ELEMENTS;

/// The values of a constant tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    /// Floating-point values (float, double and float16 tensors), as f32.
    Float(Vec<f32>),
    /// Integer values (int32 and int64 tensors), as i64.
    Int(Vec<i64>),
}

/// A decoded constant tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Constant {
    /// Shape.
    pub dims: Vec<usize>,
    /// Values, row-major.
    pub values: Values,
}

impl Constant {
    /// The values as f32 (integers converted).
    pub fn floats(&self) -> Vec<f32> {
        match &self.values {
            Values::Float(v) => v.clone(),
            Values::Int(v) => v.iter().map(|x| *x as f32).collect(),
        }
    }

    /// The values as integers, when it is an integer tensor.
    pub fn ints(&self) -> Option<&[i64]> {
        match &self.values {
            Values::Int(v) => Some(v),
            Values::Float(_) => None,
        }
    }

    /// The same values as floats or integers (`Cast`).
    pub fn cast(&self, to_float: bool) -> Constant {
        let values = match (&self.values, to_float) {
            (Values::Float(v), true) => Values::Float(v.clone()),
            (Values::Int(v), false) => Values::Int(v.clone()),
            (Values::Int(v), true) => Values::Float(v.iter().map(|x| *x as f32).collect()),
            (Values::Float(v), false) => Values::Int(v.iter().map(|x| *x as i64).collect()),
        };
        Constant {
            dims: self.dims.clone(),
            values,
        }
    }
}

/// Decode a tensor of the file; `what` names it in errors.
pub fn decode_tensor(path: &Path, t: &TensorProto, what: &str) -> Result<Constant> {
    let bad = |message: String| OnnxError::Graph {
        path: path.to_path_buf(),
        message: format!("{what}: {message}"),
    };
    if t.data_location == 1 {
        return Err(bad(
            "its values are in an external file; export with the weights inside the .onnx file \
             (torch.onnx.export(..., external_data=False))"
                .into(),
        ));
    }
    let mut dims = Vec::with_capacity(t.dims.len());
    let mut count: usize = 1;
    for &d in &t.dims {
        let d = usize::try_from(d)
            .map_err(|_| bad(format!("negative size {d} in shape {:?}", t.dims)))?;
        dims.push(d);
        count = count
            .checked_mul(d)
            .filter(|c| *c <= MAX_CONSTANT_ELEMENTS)
            .ok_or_else(|| {
                bad(format!(
                    "shape {:?} holds more than {MAX_CONSTANT_ELEMENTS} values",
                    t.dims
                ))
            })?;
    }
    let raw = &t.raw_data;
    let expect = |found: usize, unit: &str| -> Result<()> {
        if found == count {
            Ok(())
        } else {
            Err(bad(format!(
                "shape {:?} needs {count} values, the file holds {found} {unit}",
                t.dims
            )))
        }
    };
    let values = match t.data_type {
        data_type::FLOAT => Values::Float(if !raw.is_empty() {
            expect(raw.len() / 4, "(raw_data)")?;
            check_whole(raw.len(), 4).map_err(&bad)?;
            raw.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        } else {
            expect(t.float_data.len(), "(float_data)")?;
            t.float_data.clone()
        }),
        data_type::DOUBLE => Values::Float(if !raw.is_empty() {
            expect(raw.len() / 8, "(raw_data)")?;
            check_whole(raw.len(), 8).map_err(&bad)?;
            raw.chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect()
        } else {
            expect(t.double_data.len(), "(double_data)")?;
            t.double_data.iter().map(|x| *x as f32).collect()
        }),
        data_type::FLOAT16 => Values::Float(if !raw.is_empty() {
            expect(raw.len() / 2, "(raw_data)")?;
            check_whole(raw.len(), 2).map_err(&bad)?;
            raw.chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect()
        } else {
            expect(t.int32_data.len(), "(int32_data)")?;
            t.int32_data
                .iter()
                .map(|x| half::f16::from_bits(*x as u16).to_f32())
                .collect()
        }),
        data_type::INT64 => Values::Int(if !raw.is_empty() {
            expect(raw.len() / 8, "(raw_data)")?;
            check_whole(raw.len(), 8).map_err(&bad)?;
            raw.chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect()
        } else {
            expect(t.int64_data.len(), "(int64_data)")?;
            t.int64_data.clone()
        }),
        data_type::INT32 => Values::Int(if !raw.is_empty() {
            expect(raw.len() / 4, "(raw_data)")?;
            check_whole(raw.len(), 4).map_err(&bad)?;
            raw.chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
                .collect()
        } else {
            expect(t.int32_data.len(), "(int32_data)")?;
            t.int32_data.iter().map(|x| *x as i64).collect()
        }),
        other => {
            return Err(bad(format!(
            "element type {other} is not supported (float, double, float16, int32 and int64 are)"
        )))
        }
    };
    Ok(Constant { dims, values })
}

fn check_whole(bytes: usize, unit: usize) -> std::result::Result<(), String> {
    if bytes.is_multiple_of(unit) {
        Ok(())
    } else {
        Err(format!(
            "raw_data of {bytes} bytes is not a whole number of {unit}-byte values"
        ))
    }
}
