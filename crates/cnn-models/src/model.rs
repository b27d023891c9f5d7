//! A [`Model`]: a validated [`ModelSpec`] plus its tensors, and the forward pass derived from
//! the spec (training and evaluation mode, optional per-site kernel masks).

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var, D};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::error::{ModelError, Result};
use crate::ops::{self, OpsBackend};
use crate::spec::{Analysis, LayerSpec, ModelSpec, TensorRole};

/// BatchNorm epsilon (PyTorch default).
pub const BN_EPS: f64 = 1e-5;
/// BatchNorm running-statistics momentum (PyTorch default).
pub const BN_MOMENTUM: f64 = 0.1;

/// A CNN: spec, derived analysis and named tensors (parameters and BatchNorm buffers).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use cnn_models::{presets, Model};
/// let spec = presets::simcnn(0.125, 3, 10, true);
/// let model = Model::init(spec, 7, &Device::Cpu).unwrap();
/// let x = Tensor::zeros((2, 3, 32, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
/// let logits = model.forward_eval(&x).unwrap();
/// assert_eq!(logits.dims(), &[2, 10]);
/// ```
#[derive(Clone)]
pub struct Model {
    spec: ModelSpec,
    analysis: Analysis,
    tensors: BTreeMap<String, Tensor>,
    device: Device,
    ops: OpsBackend,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("spec", &self.spec.name)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// A BatchNorm running-statistics update from a training-mode forward:
/// (parameter prefix, new running mean, new running variance).
pub type BnUpdate = (String, Tensor, Tensor);

/// Options of one forward pass.
#[derive(Default)]
pub struct ForwardOptions<'a> {
    /// Training mode: batch statistics in BatchNorm (running stats updated), dropout active.
    pub train: bool,
    /// RNG for dropout (training mode only; without it dropout is skipped).
    pub dropout_rng: Option<&'a mut ChaCha8Rng>,
    /// Kernel masks, one tensor per mask site of shape `[G, C_site]`; the batch is G groups of
    /// equal size and group g uses row g. Applied to each conv's post-activation output.
    pub masks: Option<&'a [Tensor]>,
    /// Kernel masks per physical conv (same shapes as `masks`, indexed by conv), taking
    /// precedence over `masks`: convs that share a site can then use separate binariser
    /// outputs, so a straight-through backward is clipped per use (design §5.2).
    pub conv_masks: Option<&'a [Tensor]>,
    /// When set, every conv's activity is pushed here in conv order: the L1 norm over H×W of
    /// its output after activation and mask, `[B, C]` per conv (CNNSplitter's kernel
    /// importance, design §6.1).
    pub activity: Option<&'a mut Vec<Tensor>>,
}

struct Walk<'a, 'o> {
    model: &'a Model,
    opts: &'o mut ForwardOptions<'a>,
    conv: usize,
    linear: usize,
    slots: Vec<(String, Tensor)>,
    bn_updates: Vec<BnUpdate>,
}

impl Model {
    /// A freshly initialised model (design §3 init), every draw from `seed` through ChaCha8.
    pub fn init(spec: ModelSpec, seed: u64, device: &Device) -> Result<Self> {
        let analysis = spec.analyse()?;
        let mut rng = crate::seeded(seed, crate::Stream::Init);
        let tensors = crate::weights::init_tensors(&spec, &analysis, &mut rng, device)?;
        Ok(Model {
            spec,
            analysis,
            tensors,
            device: device.clone(),
            ops: OpsBackend::default_for(device),
        })
    }

    /// Build a model from a spec and a complete set of named tensors (shapes are checked).
    pub fn from_tensors(
        spec: ModelSpec,
        tensors: BTreeMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self> {
        let analysis = spec.analyse()?;
        let mut checked = BTreeMap::new();
        for (key, shape, _) in analysis.tensor_shapes() {
            let t = tensors.get(&key).ok_or_else(|| {
                ModelError::Mismatch(format!("missing tensor `{key}` (expected shape {shape:?})"))
            })?;
            if t.dims() != shape.as_slice() {
                return Err(ModelError::Mismatch(format!(
                    "tensor `{key}` has shape {:?}, expected {shape:?}",
                    t.dims()
                )));
            }
            checked.insert(key, t.to_dtype(DType::F32)?.to_device(device)?);
        }
        Ok(Model {
            spec,
            analysis,
            tensors: checked,
            device: device.clone(),
            ops: OpsBackend::default_for(device),
        })
    }

    /// The spec.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }
    /// The derived analysis (convs, sites, shapes, costs).
    pub fn analysis(&self) -> &Analysis {
        &self.analysis
    }
    /// The device the tensors live on.
    pub fn device(&self) -> &Device {
        &self.device
    }
    /// Named tensors (parameters and buffers), sorted by name.
    pub fn tensors(&self) -> &BTreeMap<String, Tensor> {
        &self.tensors
    }
    /// A tensor by name.
    pub fn tensor(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| ModelError::Mismatch(format!("model has no tensor `{name}`")))
    }
    /// Which op implementations the forward pass uses.
    pub fn ops(&self) -> OpsBackend {
        self.ops
    }
    /// Choose the op implementations (fast CPU ops or candle's own).
    pub fn set_ops(&mut self, ops: OpsBackend) {
        self.ops = ops;
    }

    /// Turn every parameter into a candle [`Var`] (for training) and return them with their
    /// names; the model's tensors then share storage with the vars, so `Var::set` updates it.
    pub fn trainable_vars(&mut self) -> Result<Vec<(String, Var)>> {
        let mut out = Vec::new();
        for (key, _, role) in self.analysis.tensor_shapes() {
            if role != TensorRole::Param {
                continue;
            }
            let t = &self.tensors[&key];
            let var = Var::from_tensor(t)?;
            self.tensors.insert(key.clone(), var.as_tensor().clone());
            out.push((key, var));
        }
        Ok(out)
    }

    /// Replace every tensor by a detached copy: the model is then frozen (no gradient reaches
    /// its weights), as GradSplitter and evaluation need.
    pub fn freeze(&mut self) -> Result<()> {
        for t in self.tensors.values_mut() {
            *t = t.detach().copy()?;
        }
        Ok(())
    }

    /// Overwrite a tensor's values (same shape), keeping the storage shared with any var.
    pub(crate) fn set_tensor(&mut self, key: &str, value: Tensor) {
        self.tensors.insert(key.to_string(), value);
    }

    /// Evaluation-mode logits of a normalised batch `[B, C, H, W]`.
    pub fn forward_eval(&self, x: &Tensor) -> Result<Tensor> {
        let (y, _) = self.forward(x, ForwardOptions::default())?;
        Ok(y)
    }

    /// Forward pass with options. Returns the logits and, in training mode, the BatchNorm
    /// running-statistic updates `(prefix, new running_mean, new running_var)` for
    /// [`Model::apply_bn_updates`].
    pub fn forward<'a>(
        &'a self,
        x: &Tensor,
        mut opts: ForwardOptions<'a>,
    ) -> Result<(Tensor, Vec<BnUpdate>)> {
        let inp = self.spec.input;
        let dims = x.dims();
        if dims.len() != 4 || dims[1..] != [inp.channels, inp.height, inp.width] {
            return Err(ModelError::Mismatch(format!(
                "input batch has shape {dims:?}, the model expects [B, {}, {}, {}]",
                inp.channels, inp.height, inp.width
            )));
        }
        let mask_counts = [
            (
                opts.conv_masks,
                self.analysis.convs.len(),
                "conv masks given, the model has",
                "convs",
            ),
            (
                opts.masks,
                self.analysis.sites.len(),
                "masks given, the model has",
                "mask sites",
            ),
        ];
        for (masks, expected, given, unit) in mask_counts {
            if let Some(m) = masks.filter(|m| m.len() != expected) {
                return Err(ModelError::Mismatch(format!(
                    "{} {given} {expected} {unit}",
                    m.len()
                )));
            }
        }
        let mut walk = Walk {
            model: self,
            opts: &mut opts,
            conv: 0,
            linear: 0,
            slots: vec![],
            bn_updates: vec![],
        };
        let y = walk.layers(&self.spec.layers, x.clone())?;
        Ok((y, walk.bn_updates))
    }

    /// Store BatchNorm running statistics returned by a training-mode forward.
    pub fn apply_bn_updates(&mut self, updates: Vec<BnUpdate>) {
        for (prefix, mean, var) in updates {
            self.tensors.insert(format!("{prefix}.running_mean"), mean);
            self.tensors.insert(format!("{prefix}.running_var"), var);
        }
    }

    /// Evaluation-mode logits of many images, in batches of `batch` (no autograd graph kept).
    pub fn predict_logits(&self, x: &Tensor, batch: usize) -> Result<Tensor> {
        let n = x.dim(0)?;
        let mut outs = Vec::new();
        let mut start = 0;
        while start < n {
            let len = batch.max(1).min(n - start);
            outs.push(self.forward_eval(&x.narrow(0, start, len)?)?.detach());
            start += len;
        }
        if outs.is_empty() {
            return Ok(Tensor::zeros(
                (0, self.spec.num_classes),
                DType::F32,
                &self.device,
            )?);
        }
        Ok(Tensor::cat(&outs, 0)?)
    }
}

impl<'a> Walk<'a, '_> {
    fn record_activity(&mut self, y: &Tensor) -> Result<()> {
        if let Some(activity) = self.opts.activity.as_deref_mut() {
            activity.push(y.detach().abs()?.sum((2, 3))?);
        }
        Ok(())
    }

    fn t(&self, key: &str) -> Result<&'a Tensor> {
        self.model.tensor(key)
    }

    fn layers(&mut self, layers: &'a [LayerSpec], mut x: Tensor) -> Result<Tensor> {
        let ops = self.model.ops;
        let mut layers = layers.iter().peekable();
        while let Some(layer) = layers.next() {
            x = match layer {
                LayerSpec::Conv(c) => {
                    let info = &self.model.analysis.convs[self.conv];
                    self.conv += 1;
                    let w = self.t(&format!("{}.weight", c.name))?;
                    let b = if c.bias {
                        Some(self.t(&format!("{}.bias", c.name))?)
                    } else {
                        None
                    };
                    let mask = match self.opts.conv_masks {
                        Some(cm) => Some(&cm[info.index]),
                        None => self.opts.masks.map(|m| &m[info.site]),
                    };
                    // Convs the fused ops do not take (grouped, dilated, rectangular, ReLU6) run
                    // as a general conv followed by the separate BN, activation and mask ops.
                    let plain = c.is_plain() && !c.relu6;
                    // Evaluation with BN: conv → BN (→ ReLU) (→ mask) as one fused op on the
                    // fast path (inference and GradSplitter's masked forward).
                    if let (Some(bn), false, OpsBackend::Fast, true) =
                        (&c.bn, self.opts.train, ops, plain)
                    {
                        let params = cpu_ops::ConvBnParams {
                            weight: w,
                            bias: b,
                            gamma: self.t(&format!("{bn}.weight"))?,
                            beta: self.t(&format!("{bn}.bias"))?,
                        };
                        let stats = cpu_ops::RunningStats {
                            mean: self.t(&format!("{bn}.running_mean"))?,
                            var: self.t(&format!("{bn}.running_var"))?,
                        };
                        let y = cpu_ops::conv_bn_eval(&x, &params, &stats, &block_config(c), mask)?;
                        self.record_activity(&y)?;
                        x = y;
                        continue;
                    }
                    // Training with BN: conv → BN (→ ReLU) as one fused op on the fast path.
                    let fused_bn =
                        self.opts.train && c.bn.is_some() && ops == OpsBackend::Fast && plain;
                    // ReLU6 is applied after the BN ops, which then run without their ReLU.
                    let bn_relu = c.relu && !c.relu6;
                    // (With the fused op, `y` is assigned its output in the training branch
                    // below before it is read.)
                    let mut y = if fused_bn {
                        x.clone()
                    } else if c.is_plain() {
                        ops::conv2d(ops, &x, w, b, c.stride.h, c.padding.h)?
                    } else {
                        ops::conv2d_general(ops, &x, w, b, &ops::ConvGeometry::of(c))?
                    };
                    if let Some(bn) = &c.bn {
                        let gamma = self.t(&format!("{bn}.weight"))?;
                        let beta = self.t(&format!("{bn}.bias"))?;
                        if self.opts.train {
                            // A max-pool right after goes inside the fused op too, unless the
                            // block's own output is needed (masks, recorded activity).
                            let pool = match layers.peek() {
                                Some(LayerSpec::MaxPool {
                                    kernel,
                                    stride,
                                    padding: 0,
                                }) if fused_bn
                                    && mask.is_none()
                                    && self.opts.activity.is_none() =>
                                {
                                    Some((*kernel, *stride))
                                }
                                _ => None,
                            };
                            let (out, mean, var) = if fused_bn {
                                if pool.is_some() {
                                    layers.next();
                                }
                                let params = cpu_ops::ConvBnParams {
                                    weight: w,
                                    bias: b,
                                    gamma,
                                    beta,
                                };
                                cpu_ops::conv_bn_train(&x, &params, &block_config(c), pool)?
                            } else {
                                ops::batch_norm_train(ops, &y, gamma, beta, BN_EPS, bn_relu)?
                            };
                            // Elements per channel behind the statistics: the conv output's.
                            let n = (x.dim(0)? * info.out_hw.0 * info.out_hw.1) as f64;
                            let unbiased = if n > 1.0 {
                                (var.detach() * (n / (n - 1.0)))?
                            } else {
                                var.detach()
                            };
                            let rm = self.t(&format!("{bn}.running_mean"))?;
                            let rv = self.t(&format!("{bn}.running_var"))?;
                            let new_m =
                                ((rm * (1.0 - BN_MOMENTUM))? + (mean.detach() * BN_MOMENTUM)?)?;
                            let new_v = ((rv * (1.0 - BN_MOMENTUM))? + (unbiased * BN_MOMENTUM)?)?;
                            self.bn_updates.push((bn.clone(), new_m, new_v));
                            y = out;
                        } else {
                            let rm = self.t(&format!("{bn}.running_mean"))?;
                            let rv = self.t(&format!("{bn}.running_var"))?;
                            if let Some(m) = mask.filter(|_| bn_relu) {
                                y = ops::batch_norm_relu_mask_eval(
                                    ops, &y, gamma, beta, rm, rv, BN_EPS, m,
                                )?;
                                self.record_activity(&y)?;
                                x = y;
                                continue;
                            }
                            y = ops::batch_norm_eval(
                                ops, &y, gamma, beta, rm, rv, BN_EPS, bn_relu,
                            )?;
                        }
                        if c.relu6 {
                            y = ops::relu6(&y)?;
                        }
                    } else if c.relu6 {
                        y = ops::relu6(&y)?;
                    } else if c.relu {
                        y = cpu_ops::reference::relu(&y)?;
                    }
                    if let Some(m) = mask {
                        y = ops::channel_mask(ops, &y, m)?;
                    }
                    self.record_activity(&y)?;
                    y
                }
                LayerSpec::MaxPool {
                    kernel,
                    stride,
                    padding,
                } => ops::max_pool2d_padded(ops, &x, *kernel, *stride, *padding)?,
                LayerSpec::AvgPool {
                    kernel,
                    stride,
                    padding,
                    count_include_pad,
                } => ops::avg_pool2d(&x, *kernel, *stride, *padding, *count_include_pad)?,
                LayerSpec::Dropout { p } => {
                    if self.opts.train {
                        match self.opts.dropout_rng.as_deref_mut() {
                            Some(rng) => dropout(&x, *p, rng)?,
                            None => x,
                        }
                    } else {
                        x
                    }
                }
                LayerSpec::Relu => cpu_ops::reference::relu(&x)?,
                LayerSpec::Relu6 => ops::relu6(&x)?,
                LayerSpec::Flatten => {
                    let b = x.dim(0)?;
                    x.reshape((b, ()))?
                }
                LayerSpec::GlobalAvgPool => x.mean(D::Minus1)?.mean(D::Minus1)?,
                LayerSpec::Linear(l) => {
                    self.linear += 1;
                    let w = self.t(&format!("{}.weight", l.name))?;
                    let b = self.t(&format!("{}.bias", l.name))?;
                    let y = x.matmul(&w.t()?)?.broadcast_add(b)?;
                    if l.relu {
                        cpu_ops::reference::relu(&y)?
                    } else {
                        y
                    }
                }
                LayerSpec::Save { slot } => {
                    self.slots.retain(|(s, _)| s != slot);
                    self.slots.push((slot.clone(), x.clone()));
                    x
                }
                LayerSpec::Add { slot, shortcut } => {
                    let saved = self
                        .slots
                        .iter()
                        .find(|(s, _)| s == slot)
                        .map(|(_, t)| t.clone())
                        .ok_or_else(|| {
                            ModelError::Mismatch(format!("slot `{slot}` was never saved"))
                        })?;
                    let skip = if shortcut.is_empty() {
                        saved
                    } else {
                        self.layers(shortcut, saved)?
                    };
                    (x + skip)?
                }
                LayerSpec::Concat { branches } => {
                    let mut outs = Vec::with_capacity(branches.len());
                    for branch in branches {
                        outs.push(self.layers(branch, x.clone())?);
                    }
                    Tensor::cat(&outs, 1)?
                }
            };
        }
        Ok(x)
    }
}

/// The fused conv → batch-norm op's settings for one conv of a spec.
fn block_config(c: &crate::spec::ConvSpec) -> cpu_ops::ConvBnConfig {
    cpu_ops::ConvBnConfig {
        stride: c.stride.h,
        padding: c.padding.h,
        eps: BN_EPS,
        relu: c.relu,
    }
}

/// Inverted dropout with a mask drawn from `rng` (so runs are reproducible from the seed).
fn dropout(x: &Tensor, p: f32, rng: &mut ChaCha8Rng) -> Result<Tensor> {
    if p <= 0.0 {
        return Ok(x.clone());
    }
    let keep = 1.0 - p;
    let n = x.elem_count();
    let scale = 1.0 / keep;
    let mask: Vec<f32> = (0..n)
        .map(|_| {
            if rng.random::<f32>() < keep {
                scale
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, x.shape(), x.device())?;
    Ok((x * mask)?)
}
