//! Weight initialisation, and reading/writing weights as safetensors under the PyTorch
//! state_dict names of the reference models (design §3.3).

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use safetensors::tensor::{Dtype, TensorView};

use crate::error::{ModelError, Result};
use crate::spec::{Analysis, ConvInit, ModelSpec};

fn uniform(rng: &mut ChaCha8Rng, n: usize, bound: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-bound..=bound)).collect()
}

/// Initial tensors for a spec: convs per `spec.conv_init`, everything else as PyTorch does.
pub fn init_tensors(
    spec: &ModelSpec,
    analysis: &Analysis,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<BTreeMap<String, Tensor>> {
    let mut out = BTreeMap::new();
    for c in &analysis.convs {
        let shape = c.weight_shape();
        let n = c.weight_elements();
        let fan_in = n / c.out_channels;
        let bound = 1.0 / (fan_in as f32).sqrt();
        let (w, b) = match spec.conv_init {
            ConvInit::TorchDefault => (uniform(rng, n, bound), uniform(rng, c.out_channels, bound)),
            ConvInit::HeNormalFanOut => {
                let std = (2.0 / (c.kernel.h * c.kernel.w * c.out_channels) as f64).sqrt();
                let normal =
                    Normal::new(0.0, std).map_err(|e| ModelError::Mismatch(e.to_string()))?;
                (
                    (0..n).map(|_| normal.sample(rng) as f32).collect(),
                    vec![0.0; c.out_channels],
                )
            }
        };
        out.insert(
            format!("{}.weight", c.name),
            Tensor::from_vec(w, shape, device)?,
        );
        if c.bias {
            out.insert(
                format!("{}.bias", c.name),
                Tensor::from_vec(b, c.out_channels, device)?,
            );
        }
    }
    for (bn, ch) in &analysis.batch_norms {
        out.insert(
            format!("{bn}.weight"),
            Tensor::ones(*ch, candle_core::DType::F32, device)?,
        );
        out.insert(
            format!("{bn}.bias"),
            Tensor::zeros(*ch, candle_core::DType::F32, device)?,
        );
        out.insert(
            format!("{bn}.running_mean"),
            Tensor::zeros(*ch, candle_core::DType::F32, device)?,
        );
        out.insert(
            format!("{bn}.running_var"),
            Tensor::ones(*ch, candle_core::DType::F32, device)?,
        );
    }
    for l in &analysis.linears {
        let bound = 1.0 / (l.in_features as f32).sqrt();
        let w = uniform(rng, l.in_features * l.out_features, bound);
        let b = uniform(rng, l.out_features, bound);
        out.insert(
            format!("{}.weight", l.name),
            Tensor::from_vec(w, (l.out_features, l.in_features), device)?,
        );
        out.insert(
            format!("{}.bias", l.name),
            Tensor::from_vec(b, l.out_features, device)?,
        );
    }
    Ok(out)
}

fn to_f32(path: &Path, key: &str, view: &TensorView<'_>) -> Result<Vec<f32>> {
    let data = view.data();
    let v: Vec<f32> = match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8-byte chunk")) as f32)
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => {
            return Err(ModelError::bad(
                path,
                format!("tensor `{key}` has dtype {other:?}, expected a float type"),
            ))
        }
    };
    if let Some(bad) = v.iter().position(|x| !x.is_finite()) {
        return Err(ModelError::bad(
            path,
            format!("tensor `{key}` holds a non-finite value at element {bad}"),
        ));
    }
    Ok(v)
}

/// Read the tensors a spec needs from a safetensors file, checking every key and shape.
/// `num_batches_tracked` entries are accepted and ignored; any other unknown key is an error.
pub fn load_safetensors(
    path: &Path,
    analysis: &Analysis,
    arch: &str,
    device: &Device,
) -> Result<BTreeMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    parse_safetensors(path, &bytes, analysis, arch, device)
}

/// Reads the tensors a spec needs from the bytes of a safetensors file, with the checks of
/// [`load_safetensors`]; `path` is used in error messages only.
pub fn parse_safetensors(
    path: &Path,
    bytes: &[u8],
    analysis: &Analysis,
    arch: &str,
    device: &Device,
) -> Result<BTreeMap<String, Tensor>> {
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| ModelError::bad(path, format!("not a valid safetensors file: {e}")))?;
    let expected = analysis.tensor_shapes();
    let known: std::collections::BTreeSet<&str> =
        expected.iter().map(|(k, _, _)| k.as_str()).collect();
    let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();
    for name in &names {
        if !known.contains(name.as_str()) && !name.ends_with("num_batches_tracked") {
            return Err(ModelError::UnexpectedTensor {
                path: path.to_path_buf(),
                key: name.clone(),
                arch: arch.to_string(),
            });
        }
    }
    let mut out = BTreeMap::new();
    for (key, shape, _) in expected {
        let view = st.tensor(&key).map_err(|_| ModelError::MissingTensor {
            path: path.to_path_buf(),
            key: key.clone(),
            expected: shape.clone(),
        })?;
        if view.shape() != shape.as_slice() {
            return Err(ModelError::WrongShape {
                path: path.to_path_buf(),
                key,
                expected: shape,
                found: view.shape().to_vec(),
            });
        }
        let data = to_f32(path, &key, &view)?;
        out.insert(key, Tensor::from_vec(data, shape, device)?);
    }
    Ok(out)
}

/// Serialise named f32 tensors as safetensors bytes (plus an i64 `num_batches_tracked` = 0
/// for every BatchNorm, so PyTorch's strict `load_state_dict` accepts the file).
pub fn safetensors_bytes(
    tensors: &BTreeMap<String, Tensor>,
    batch_norms: &[String],
) -> Result<Vec<u8>> {
    let mut owned: Vec<(String, Vec<u8>, Vec<usize>, Dtype)> = Vec::new();
    for (k, t) in tensors {
        let v: Vec<f32> = t.to_device(&Device::Cpu)?.flatten_all()?.to_vec1()?;
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        owned.push((k.clone(), bytes, t.dims().to_vec(), Dtype::F32));
    }
    for bn in batch_norms {
        owned.push((
            format!("{bn}.num_batches_tracked"),
            0i64.to_le_bytes().to_vec(),
            vec![],
            Dtype::I64,
        ));
    }
    let views: Vec<(String, TensorView<'_>)> = owned
        .iter()
        .map(|(k, b, s, d)| {
            Ok((
                k.clone(),
                TensorView::new(*d, s.clone(), b)
                    .map_err(|e| ModelError::Mismatch(e.to_string()))?,
            ))
        })
        .collect::<Result<_>>()?;
    // one metadata entry only: a HashMap with several would serialise in a random order,
    // and the same tensors must always give the same bytes (and SHA-256)
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    safetensors::serialize(views, Some(meta)).map_err(|e| ModelError::Mismatch(e.to_string()))
}
