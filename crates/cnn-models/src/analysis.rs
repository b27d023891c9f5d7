//! Analysis of a [`ModelSpec`]: the walker behind [`ModelSpec::analyse`], which validates a spec
//! and derives shapes, parameter names, kernel counts, mask sites (coupling groups), MACs and
//! the per-layer table, before any tensor is allocated.

use serde::Serialize;

use crate::error::ModelError;
use crate::spec::{
    HeightWidth, LayerSpec, ModelSpec, MAX_ACTIVATION_ELEMENTS, MAX_PARAMETERS, MAX_TENSOR_ELEMENTS,
};

/// Where the channels a layer reads come from — needed to slice input channels on extraction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelSource {
    /// The model input (all channels kept).
    Input(usize),
    /// The output channels of mask site `site` (a conv or a coupled group of convs).
    Site {
        /// Mask site index.
        site: usize,
        /// Full channel count of the site.
        channels: usize,
    },
    /// A concatenation of sources, in order.
    Concat(Vec<ChannelSource>),
}

impl ChannelSource {
    /// Full number of channels.
    pub fn channels(&self) -> usize {
        match self {
            ChannelSource::Input(c) => *c,
            ChannelSource::Site { channels, .. } => *channels,
            ChannelSource::Concat(parts) => parts.iter().map(ChannelSource::channels).sum(),
        }
    }
}

/// A conv layer as the analysis sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvInfo {
    /// Physical conv index (depth-first order of the spec).
    pub index: usize,
    /// Parameter-name prefix of the conv.
    pub name: String,
    /// Parameter-name prefix of its BatchNorm, if any.
    pub bn: Option<String>,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels (kernels).
    pub out_channels: usize,
    /// Kernel size.
    pub kernel: HeightWidth,
    /// Stride.
    pub stride: HeightWidth,
    /// Padding on each side.
    pub padding: HeightWidth,
    /// Dilation (both axes).
    pub dilation: usize,
    /// Channel groups (1, or the channel count for a depthwise conv).
    pub groups: usize,
    /// Whether the conv has a bias.
    pub bias: bool,
    /// Input height/width.
    pub in_hw: (usize, usize),
    /// Output height/width.
    pub out_hw: (usize, usize),
    /// Where its input channels come from (for a depthwise conv: the site it belongs to).
    pub reads: ChannelSource,
    /// Mask site (coupling group) index.
    pub site: usize,
}

impl ConvInfo {
    /// Multiply-accumulates per image.
    pub fn macs(&self) -> u64 {
        (self.out_hw.0 * self.out_hw.1) as u64 * self.weight_elements() as u64
    }
    /// Whether this is a depthwise conv (one filter per input channel, groups > 1).
    pub fn is_depthwise(&self) -> bool {
        self.groups > 1
    }
    /// Shape of the weight tensor: `[out, in / groups, kernel h, kernel w]`.
    pub fn weight_shape(&self) -> Vec<usize> {
        vec![
            self.out_channels,
            self.in_channels / self.groups.max(1),
            self.kernel.h,
            self.kernel.w,
        ]
    }
    /// Number of weight values.
    pub fn weight_elements(&self) -> usize {
        self.weight_shape().iter().product()
    }
}

/// A fully connected layer as the analysis sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinearInfo {
    /// Parameter-name prefix.
    pub name: String,
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    /// For the first linear after the conv stages: the channels its input columns come from
    /// and the number of consecutive columns per channel (h·w of the flattened map).
    pub reads: Option<(ChannelSource, usize)>,
}

/// A mask site: a set of convs that must share one kernel mask (joined by residual adds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaskSite {
    /// Site index.
    pub index: usize,
    /// Physical conv indices in this site, ascending.
    pub convs: Vec<usize>,
    /// Channel count shared by the convs.
    pub channels: usize,
}

/// Activation shape between layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActShape {
    /// A C×H×W map.
    Map(usize, usize, usize),
    /// A feature vector.
    Vector(usize),
}

impl ActShape {
    fn elements(&self) -> usize {
        match *self {
            ActShape::Map(c, h, w) => c.saturating_mul(h).saturating_mul(w),
            ActShape::Vector(n) => n,
        }
    }
}

impl std::fmt::Display for ActShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActShape::Map(c, h, w) => write!(f, "{c}×{h}×{w}"),
            ActShape::Vector(n) => write!(f, "{n}"),
        }
    }
}

/// One row of a per-layer summary (what `cnnsplit inspect` prints).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerRow {
    /// Path of the layer in the spec (`3`, `7.branch1.0`).
    pub path: String,
    /// Parameter-name prefix of a conv or linear layer (`layer1.0.conv1`), empty for layers
    /// without parameters.
    pub name: String,
    /// What it is (`conv 3×3 3→16 +bn +relu`).
    pub description: String,
    /// Output shape.
    pub output: String,
    /// Trainable parameters.
    pub params: u64,
    /// Multiply-accumulates per image.
    pub macs: u64,
}

/// Everything derived from a validated [`ModelSpec`].
#[derive(Clone, Debug, PartialEq)]
pub struct Analysis {
    /// Convs in physical order.
    pub convs: Vec<ConvInfo>,
    /// Linear layers in order.
    pub linears: Vec<LinearInfo>,
    /// Mask sites (coupling groups).
    pub sites: Vec<MaskSite>,
    /// BatchNorm layers: (prefix, channels).
    pub batch_norms: Vec<(String, usize)>,
    /// Per-layer rows.
    pub rows: Vec<LayerRow>,
    /// Output shape of the network.
    pub output: ActShape,
    /// Activation values one image produces: the input plus every layer's output.
    pub activation_elements: u64,
}

impl Analysis {
    /// Total conv kernels K_tot = Σ C_ℓ over physical convs.
    pub fn total_kernels(&self) -> usize {
        self.convs.iter().map(|c| c.out_channels).sum()
    }
    /// Trainable parameters (BatchNorm running statistics excluded).
    pub fn params(&self) -> u64 {
        self.rows.iter().map(|r| r.params).sum()
    }
    /// Multiply-accumulates per image (conv + linear).
    pub fn macs(&self) -> u64 {
        self.rows.iter().map(|r| r.macs).sum()
    }
    /// Conv multiply-accumulates per image.
    pub fn conv_macs(&self) -> u64 {
        self.convs.iter().map(ConvInfo::macs).sum()
    }
    /// Every parameter and buffer the model holds, with its shape, in a stable order.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>, TensorRole)> {
        let mut out = Vec::new();
        for c in &self.convs {
            out.push((
                format!("{}.weight", c.name),
                c.weight_shape(),
                TensorRole::Param,
            ));
            if c.bias {
                out.push((
                    format!("{}.bias", c.name),
                    vec![c.out_channels],
                    TensorRole::Param,
                ));
            }
        }
        for (bn, ch) in &self.batch_norms {
            out.push((format!("{bn}.weight"), vec![*ch], TensorRole::Param));
            out.push((format!("{bn}.bias"), vec![*ch], TensorRole::Param));
            out.push((format!("{bn}.running_mean"), vec![*ch], TensorRole::Buffer));
            out.push((format!("{bn}.running_var"), vec![*ch], TensorRole::Buffer));
        }
        for l in &self.linears {
            out.push((
                format!("{}.weight", l.name),
                vec![l.out_features, l.in_features],
                TensorRole::Param,
            ));
            out.push((
                format!("{}.bias", l.name),
                vec![l.out_features],
                TensorRole::Param,
            ));
        }
        out
    }
}

/// Whether a tensor is trained (parameter) or tracked (BatchNorm running statistics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorRole {
    /// Trained by the optimiser.
    Param,
    /// Updated as a running statistic.
    Buffer,
}

/// What produced the current activation's channels.
#[derive(Clone, Debug)]
enum Producer {
    Input(usize),
    Conv(usize),
    Concat(Vec<Producer>),
    Vector,
}

struct Walker {
    convs: Vec<ConvInfo>,
    linears: Vec<LinearInfo>,
    batch_norms: Vec<(String, usize)>,
    rows: Vec<LayerRow>,
    parent: Vec<usize>,
    slots: Vec<(String, ActShape, Producer)>,
    flattened: Option<(Producer, usize)>,
    names: std::collections::BTreeSet<String>,
    params: u64,
    activations: u64,
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

fn invalid(path: &str, msg: impl std::fmt::Display) -> ModelError {
    ModelError::InvalidSpec {
        layer: path.to_string(),
        message: msg.to_string(),
    }
}

impl Walker {
    fn claim_name(&mut self, path: &str, name: &str) -> Result<(), ModelError> {
        if name.is_empty() {
            return Err(invalid(path, "parameter name prefix is empty"));
        }
        if !self.names.insert(name.to_string()) {
            return Err(invalid(
                path,
                format!("parameter name prefix `{name}` is used twice"),
            ));
        }
        Ok(())
    }

    fn walk(
        &mut self,
        layers: &[LayerSpec],
        prefix: &str,
        mut shape: ActShape,
        mut producer: Producer,
    ) -> Result<(ActShape, Producer), ModelError> {
        for (i, layer) in layers.iter().enumerate() {
            let path = if prefix.is_empty() {
                i.to_string()
            } else {
                format!("{prefix}.{i}")
            };
            let (desc, params, macs);
            match layer {
                LayerSpec::Conv(c) => {
                    let ActShape::Map(cin, h, w) = shape else {
                        return Err(invalid(&path, "conv after flatten: its input is a vector"));
                    };
                    if c.out_channels == 0
                        || c.kernel.h == 0
                        || c.kernel.w == 0
                        || c.stride.h == 0
                        || c.stride.w == 0
                        || c.dilation == 0
                        || c.groups == 0
                    {
                        return Err(invalid(
                            &path,
                            "out_channels, kernel, stride, dilation and groups must be ≥ 1",
                        ));
                    }
                    if c.groups > 1 && !(c.groups == cin && c.out_channels == cin) {
                        return Err(invalid(
                            &path,
                            format!(
                                "grouped conv with groups {} on {cin}→{} channels: only \
                                 depthwise convs (groups = input = output channels) are supported",
                                c.groups, c.out_channels
                            ),
                        ));
                    }
                    if c.relu6 && !c.relu {
                        return Err(invalid(&path, "relu6 is set but relu is not"));
                    }
                    let (ho, wo) = (
                        conv_out_len(&path, h, c.kernel.h, c.stride.h, c.padding.h, c.dilation)?,
                        conv_out_len(&path, w, c.kernel.w, c.stride.w, c.padding.w, c.dilation)?,
                    );
                    let weight_elems = c
                        .out_channels
                        .checked_mul(cin / c.groups)
                        .and_then(|v| v.checked_mul(c.kernel.h.checked_mul(c.kernel.w)?))
                        .filter(|v| *v <= MAX_TENSOR_ELEMENTS)
                        .ok_or_else(|| invalid(&path, "conv weight too large"))?;
                    let out_elems = ActShape::Map(c.out_channels, ho, wo).elements();
                    if out_elems > MAX_TENSOR_ELEMENTS {
                        return Err(invalid(
                            &path,
                            format!("output shape {}×{ho}×{wo} is too large", c.out_channels),
                        ));
                    }
                    self.claim_name(&path, &c.name)?;
                    let index = self.convs.len();
                    let reads = source_of(&producer, &mut self.parent, &self.convs, &path)?;
                    self.parent.push(index);
                    if c.groups > 1 {
                        // A depthwise conv keeps exactly the channels its input keeps: it joins
                        // the mask site of the conv that feeds it (design §5.3).
                        let Producer::Conv(feeder) = producer else {
                            return Err(invalid(
                                &path,
                                "a depthwise conv must read a conv's output (not the input, a \
                                 vector or a concatenation)",
                            ));
                        };
                        let (ra, rb) = (find(&mut self.parent, feeder), index);
                        self.parent[ra.max(rb)] = ra.min(rb);
                    }
                    self.convs.push(ConvInfo {
                        index,
                        name: c.name.clone(),
                        bn: c.bn.clone(),
                        in_channels: cin,
                        out_channels: c.out_channels,
                        kernel: c.kernel,
                        stride: c.stride,
                        padding: c.padding,
                        dilation: c.dilation,
                        groups: c.groups,
                        bias: c.bias,
                        in_hw: (h, w),
                        out_hw: (ho, wo),
                        reads,
                        site: 0,
                    });
                    let mut p =
                        weight_elems as u64 + if c.bias { c.out_channels as u64 } else { 0 };
                    if let Some(bn) = &c.bn {
                        self.claim_name(&path, bn)?;
                        self.batch_norms.push((bn.clone(), c.out_channels));
                        p += 2 * c.out_channels as u64;
                    }
                    params = p;
                    macs = ((ho * wo) as u64).saturating_mul(weight_elems as u64);
                    let k = if c.kernel.is_square() {
                        format!("{}×{}", c.kernel.h, c.kernel.h)
                    } else {
                        c.kernel.to_string()
                    };
                    let s = match (c.stride.is_square(), c.stride.h) {
                        (true, 1) => String::new(),
                        (true, n) => format!(" /{n}"),
                        (false, _) => format!(" /{}", c.stride),
                    };
                    desc = format!(
                        "conv {k} {cin}→{co}{s}{dil}{dw}{bn}{act}",
                        co = c.out_channels,
                        dil = if c.dilation != 1 {
                            format!(" dilation {}", c.dilation)
                        } else {
                            String::new()
                        },
                        dw = if c.groups > 1 { " depthwise" } else { "" },
                        bn = if c.bn.is_some() { " +bn" } else { "" },
                        act = match (c.relu, c.relu6) {
                            (true, true) => " +relu6",
                            (true, false) => " +relu",
                            _ => "",
                        }
                    );
                    shape = ActShape::Map(c.out_channels, ho, wo);
                    producer = Producer::Conv(index);
                }
                LayerSpec::MaxPool {
                    kernel,
                    stride,
                    padding,
                } => {
                    let ActShape::Map(c, h, w) = shape else {
                        return Err(invalid(&path, "max-pool after flatten"));
                    };
                    let (ho, wo) = pool_out(&path, (h, w), *kernel, *stride, *padding)?;
                    shape = ActShape::Map(c, ho, wo);
                    desc = format!("max-pool {kernel}×{kernel} /{stride}{}", pad_note(*padding));
                    params = 0;
                    macs = 0;
                }
                LayerSpec::AvgPool {
                    kernel,
                    stride,
                    padding,
                    count_include_pad,
                } => {
                    let ActShape::Map(c, h, w) = shape else {
                        return Err(invalid(&path, "average pool after flatten"));
                    };
                    let (ho, wo) = pool_out(&path, (h, w), *kernel, *stride, *padding)?;
                    shape = ActShape::Map(c, ho, wo);
                    desc = format!(
                        "avg-pool {kernel}×{kernel} /{stride}{}{}",
                        pad_note(*padding),
                        if *padding > 0 && !count_include_pad {
                            " (padding not counted)"
                        } else {
                            ""
                        }
                    );
                    params = 0;
                    macs = 0;
                }
                LayerSpec::Dropout { p } => {
                    if !(0.0..1.0).contains(p) {
                        return Err(invalid(
                            &path,
                            format!("dropout probability {p} not in [0, 1)"),
                        ));
                    }
                    desc = format!("dropout {p}");
                    params = 0;
                    macs = 0;
                }
                LayerSpec::Relu => {
                    desc = "relu".into();
                    params = 0;
                    macs = 0;
                }
                LayerSpec::Relu6 => {
                    desc = "relu6".into();
                    params = 0;
                    macs = 0;
                }
                LayerSpec::Flatten => {
                    match shape {
                        ActShape::Map(c, h, w) => {
                            if self.flattened.is_none() {
                                self.flattened = Some((producer.clone(), h * w));
                            }
                            shape = ActShape::Vector(c * h * w);
                        }
                        ActShape::Vector(_) => {}
                    }
                    producer = Producer::Vector;
                    desc = "flatten".into();
                    params = 0;
                    macs = 0;
                }
                LayerSpec::GlobalAvgPool => {
                    let ActShape::Map(c, _, _) = shape else {
                        return Err(invalid(&path, "global average pool after flatten"));
                    };
                    if self.flattened.is_none() {
                        self.flattened = Some((producer.clone(), 1));
                    }
                    shape = ActShape::Vector(c);
                    producer = Producer::Vector;
                    desc = "global-avg-pool".into();
                    params = 0;
                    macs = 0;
                }
                LayerSpec::Linear(l) => {
                    let ActShape::Vector(n) = shape else {
                        return Err(invalid(
                            &path,
                            "linear layer on a map: flatten or pool it first",
                        ));
                    };
                    if l.out_features == 0 {
                        return Err(invalid(&path, "out_features must be ≥ 1"));
                    }
                    let elems = n
                        .checked_mul(l.out_features)
                        .filter(|v| *v <= MAX_TENSOR_ELEMENTS)
                        .ok_or_else(|| invalid(&path, "linear weight too large"))?;
                    self.claim_name(&path, &l.name)?;
                    let reads = if self.linears.is_empty() {
                        match self.flattened.clone() {
                            Some((prod, hw)) => {
                                Some((source_of(&prod, &mut self.parent, &self.convs, &path)?, hw))
                            }
                            None => None,
                        }
                    } else {
                        None
                    };
                    self.linears.push(LinearInfo {
                        name: l.name.clone(),
                        in_features: n,
                        out_features: l.out_features,
                        reads,
                    });
                    params = (elems + l.out_features) as u64;
                    macs = elems as u64;
                    desc = format!(
                        "linear {n}→{}{}",
                        l.out_features,
                        if l.relu { " +relu" } else { "" }
                    );
                    shape = ActShape::Vector(l.out_features);
                    producer = Producer::Vector;
                }
                LayerSpec::Save { slot } => {
                    if let Producer::Vector = producer {
                        return Err(invalid(
                            &path,
                            "saving a vector for a residual add is not supported",
                        ));
                    }
                    self.slots.retain(|(s, _, _)| s != slot);
                    self.slots.push((slot.clone(), shape, producer.clone()));
                    desc = format!("save → {slot}");
                    params = 0;
                    macs = 0;
                }
                LayerSpec::Add { slot, shortcut } => {
                    let Some((_, saved_shape, saved_prod)) =
                        self.slots.iter().find(|(s, _, _)| s == slot).cloned()
                    else {
                        return Err(invalid(
                            &path,
                            format!(
                                "residual add reads slot `{slot}`, which no earlier layer saved"
                            ),
                        ));
                    };
                    let (saved_shape, saved_prod) = if shortcut.is_empty() {
                        (saved_shape, saved_prod)
                    } else {
                        let spath = format!("{path}.shortcut");
                        if shortcut.iter().any(|l| {
                            matches!(
                                l,
                                LayerSpec::Save { .. }
                                    | LayerSpec::Add { .. }
                                    | LayerSpec::Concat { .. }
                                    | LayerSpec::Flatten
                                    | LayerSpec::GlobalAvgPool
                                    | LayerSpec::Linear(_)
                            )
                        }) {
                            return Err(invalid(
                                &spath,
                                "a shortcut holds only convs, pools, activations and dropout",
                            ));
                        }
                        self.walk(shortcut, &spath, saved_shape, saved_prod)?
                    };
                    if saved_shape != shape {
                        let detail = match (shape, saved_shape) {
                            (ActShape::Map(a, ..), ActShape::Map(b, ..)) if a != b => {
                                format!(" (channel mismatch: {a} vs {b})")
                            }
                            _ => String::new(),
                        };
                        return Err(invalid(
                            &path,
                            format!("residual add of different shapes: current {shape}, saved `{slot}` {saved_shape}{detail}"),
                        ));
                    }
                    let (Producer::Conv(a), Producer::Conv(b)) = (&saved_prod, &producer) else {
                        return Err(invalid(&path, "a residual add must join two conv outputs (not the input, a vector or a concatenation)"));
                    };
                    let (ra, rb) = (find(&mut self.parent, *a), find(&mut self.parent, *b));
                    self.parent[ra.max(rb)] = ra.min(rb);
                    desc = if shortcut.is_empty() {
                        format!("add ← {slot}")
                    } else {
                        format!("add ← {slot} through its shortcut")
                    };
                    params = 0;
                    macs = 0;
                }
                LayerSpec::Concat { branches } => {
                    let ActShape::Map(_, h, w) = shape else {
                        return Err(invalid(&path, "concat after flatten"));
                    };
                    if branches.is_empty() {
                        return Err(invalid(&path, "concat with no branches"));
                    }
                    let _ = (h, w);
                    let mut total = 0usize;
                    let mut hw: Option<(usize, usize)> = None;
                    let mut parts = Vec::new();
                    for (b, branch) in branches.iter().enumerate() {
                        let bpath = format!("{path}.branch{b}");
                        if branch.is_empty() {
                            return Err(invalid(&bpath, "empty branch"));
                        }
                        let (s, p) = self.walk(branch, &bpath, shape, producer.clone())?;
                        let ActShape::Map(c, bh, bw) = s else {
                            return Err(invalid(
                                &bpath,
                                "a branch must end with a map, not a vector",
                            ));
                        };
                        if let Some(prev) = hw {
                            if prev != (bh, bw) {
                                return Err(invalid(&bpath, format!("branch output {bh}×{bw} differs from the first branch's {}×{}", prev.0, prev.1)));
                            }
                        }
                        hw = Some((bh, bw));
                        total += c;
                        parts.push(p);
                    }
                    let (bh, bw) = hw.unwrap_or((h, w));
                    shape = ActShape::Map(total, bh, bw);
                    producer = Producer::Concat(parts);
                    desc = format!("concat of {} branches", branches.len());
                    params = 0;
                    macs = 0;
                }
            }
            if shape.elements() == 0 || shape.elements() > MAX_TENSOR_ELEMENTS {
                return Err(invalid(
                    &path,
                    format!("output shape {shape} is empty or too large"),
                ));
            }
            self.params = self.params.saturating_add(params);
            if self.params > MAX_PARAMETERS {
                return Err(invalid(
                    &path,
                    format!(
                        "the network reaches {} parameters here, over the limit of {MAX_PARAMETERS}",
                        self.params
                    ),
                ));
            }
            self.activations = self.activations.saturating_add(shape.elements() as u64);
            if self.activations > MAX_ACTIVATION_ELEMENTS {
                return Err(invalid(
                    &path,
                    format!(
                        "the network's activations reach {} values per image here, over the \
                         limit of {MAX_ACTIVATION_ELEMENTS}",
                        self.activations
                    ),
                ));
            }
            let name = match layer {
                LayerSpec::Conv(c) => c.name.clone(),
                LayerSpec::Linear(l) => l.name.clone(),
                _ => String::new(),
            };
            self.rows.push(LayerRow {
                path,
                name,
                description: desc,
                output: shape.to_string(),
                params,
                macs,
            });
        }
        Ok((shape, producer))
    }
}

/// Output length of a conv along one axis, or an error naming the layer when the kernel does
/// not fit or the padding overflows.
fn conv_out_len(
    path: &str,
    len: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Result<usize, ModelError> {
    let padded = padding
        .checked_mul(2)
        .and_then(|p| p.checked_add(len))
        .filter(|v| *v <= MAX_TENSOR_ELEMENTS)
        .ok_or_else(|| invalid(path, format!("padding {padding} is too large")))?;
    let span = (kernel - 1)
        .checked_mul(dilation)
        .and_then(|v| v.checked_add(1))
        .filter(|v| *v <= MAX_TENSOR_ELEMENTS)
        .ok_or_else(|| invalid(path, "kernel × dilation is too large"))?;
    if padded < span {
        return Err(invalid(
            path,
            format!("kernel span {span} larger than the padded input side {padded}"),
        ));
    }
    Ok((padded - span) / stride + 1)
}

/// Output height and width of a square pooling window, checked.
fn pool_out(
    path: &str,
    (h, w): (usize, usize),
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<(usize, usize), ModelError> {
    if kernel == 0 || stride == 0 {
        return Err(invalid(path, "pool kernel and stride must be ≥ 1"));
    }
    if padding.saturating_mul(2) > kernel {
        return Err(invalid(
            path,
            format!("pool padding {padding} is more than half the {kernel}×{kernel} window"),
        ));
    }
    let (hp, wp) = (h.saturating_add(2 * padding), w.saturating_add(2 * padding));
    if hp < kernel || wp < kernel {
        return Err(invalid(
            path,
            format!("pooling a {h}×{w} map with a {kernel}×{kernel} window leaves nothing"),
        ));
    }
    Ok(((hp - kernel) / stride + 1, (wp - kernel) / stride + 1))
}

fn pad_note(padding: usize) -> String {
    if padding > 0 {
        format!(" pad {padding}")
    } else {
        String::new()
    }
}

fn source_of(
    producer: &Producer,
    parent: &mut [usize],
    convs: &[ConvInfo],
    path: &str,
) -> Result<ChannelSource, ModelError> {
    Ok(match producer {
        Producer::Input(c) => ChannelSource::Input(*c),
        // sites are renumbered after the walk; keep the root conv for now
        Producer::Conv(i) => ChannelSource::Site {
            site: find(parent, *i),
            channels: convs[*i].out_channels,
        },
        Producer::Concat(parts) => ChannelSource::Concat(
            parts
                .iter()
                .map(|p| source_of(p, parent, convs, path))
                .collect::<Result<_, _>>()?,
        ),
        Producer::Vector => {
            return Err(invalid(path, "reads a vector where channels were expected"))
        }
    })
}

fn renumber(src: &mut ChannelSource, root_to_site: &dyn Fn(usize) -> usize) {
    match src {
        ChannelSource::Input(_) => {}
        ChannelSource::Site { site, .. } => *site = root_to_site(*site),
        ChannelSource::Concat(parts) => parts.iter_mut().for_each(|p| renumber(p, root_to_site)),
    }
}

impl ModelSpec {
    /// Validate the spec and derive shapes, parameter names, mask sites and costs.
    ///
    /// Errors name the offending layer by its path (e.g. `7.branch1.0`).
    pub fn analyse(&self) -> Result<Analysis, ModelError> {
        let inp = self.input;
        if inp.channels == 0 || inp.height == 0 || inp.width == 0 {
            return Err(invalid(
                "input",
                "input channels, height and width must be ≥ 1",
            ));
        }
        if inp
            .channels
            .saturating_mul(inp.height)
            .saturating_mul(inp.width)
            > MAX_TENSOR_ELEMENTS
        {
            return Err(invalid("input", "input too large"));
        }
        if self.num_classes < 2 {
            return Err(invalid(
                "spec",
                format!("num_classes is {}, needs ≥ 2", self.num_classes),
            ));
        }
        let mut w = Walker {
            convs: Vec::new(),
            linears: Vec::new(),
            batch_norms: Vec::new(),
            rows: Vec::new(),
            parent: Vec::new(),
            slots: Vec::new(),
            flattened: None,
            names: Default::default(),
            params: 0,
            activations: 0,
        };
        let start = ActShape::Map(inp.channels, inp.height, inp.width);
        w.activations = start.elements() as u64;
        if w.activations > MAX_ACTIVATION_ELEMENTS {
            return Err(invalid(
                "input",
                format!(
                    "input of {} values per image is over the activation limit of \
                     {MAX_ACTIVATION_ELEMENTS}",
                    w.activations
                ),
            ));
        }
        let (output, _) = w.walk(&self.layers, "", start, Producer::Input(inp.channels))?;
        match output {
            ActShape::Vector(n) if n == self.num_classes => {}
            other => {
                return Err(invalid(
                    "output",
                    format!(
                        "the network outputs {other}, expected a vector of num_classes = {}",
                        self.num_classes
                    ),
                ))
            }
        }
        if w.convs.is_empty() {
            return Err(invalid("spec", "a CNN needs at least one conv layer"));
        }
        // coupling groups → mask sites, numbered by their lowest conv
        let n = w.convs.len();
        // final root of every conv, after all unions
        let roots: Vec<usize> = (0..n).map(|i| find(&mut w.parent, i)).collect();
        let mut site_of_root = vec![usize::MAX; n];
        let mut sites: Vec<MaskSite> = Vec::new();
        for (i, conv) in w.convs.iter().enumerate() {
            let r = roots[i];
            if site_of_root[r] == usize::MAX {
                site_of_root[r] = sites.len();
                sites.push(MaskSite {
                    index: sites.len(),
                    convs: vec![],
                    channels: conv.out_channels,
                });
            }
            let s = site_of_root[r];
            if sites[s].channels != conv.out_channels {
                return Err(invalid(&conv.name, "coupled convs have different widths"));
            }
            sites[s].convs.push(i);
        }
        // sources recorded during the walk name a root of that moment; map it to its final site
        let map = |recorded: usize| site_of_root[roots[recorded]];
        for (i, c) in w.convs.iter_mut().enumerate() {
            c.site = site_of_root[roots[i]];
            renumber(&mut c.reads, &map);
        }
        for l in w.linears.iter_mut() {
            if let Some((src, _)) = l.reads.as_mut() {
                renumber(src, &map);
            }
        }
        Ok(Analysis {
            convs: w.convs,
            linears: w.linears,
            sites,
            batch_norms: w.batch_norms,
            rows: w.rows,
            output,
            activation_elements: w.activations,
        })
    }
}
